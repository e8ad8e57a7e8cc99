//! ringmq: a thread-per-core MQTT broker (placeholder until issue 5).
