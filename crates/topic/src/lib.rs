//! ringmq-topic (placeholder, filled by its issue).
