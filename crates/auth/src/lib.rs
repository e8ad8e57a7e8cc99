//! Authentication and authorisation decisions for ringmq, as pure
//! functions over plain data: Mosquitto-compatible password files
//! (`password`), ACL files (`acl`) and the client-id rules of
//! `--client-id-pattern` (`client_id`). Nothing here does I/O beyond what
//! a caller hands in as text, and nothing knows sockets, shards or clocks.

pub mod acl;
pub mod client_id;
pub mod password;
