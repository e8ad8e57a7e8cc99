//! ringmq-wheel (placeholder, filled by its issue).
