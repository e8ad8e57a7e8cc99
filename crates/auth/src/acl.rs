//! Mosquitto ACL files: parsing and access decisions (to be written).
