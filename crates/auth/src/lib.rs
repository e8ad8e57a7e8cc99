//! Authentication and authorisation decisions for ringmq, as pure
//! functions over plain data: Mosquitto-compatible password files
//! (`password`) and ACL files (`acl`). Nothing here does I/O beyond what a
//! caller hands in as text, and nothing knows sockets, shards or clocks.
//!
//! Not wired into the broker yet (issue 14 builds on it).

pub mod acl;
pub mod password;
