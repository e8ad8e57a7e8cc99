//! ringmq-codec (placeholder, filled by its issue).
