//! Shared helpers for the byte-literal tables in each packet file.

use bytes::{Bytes, BytesMut};

use crate::{decode, DecodeError, Limits, Packet, ProtocolVersion};

/// Decode a complete packet, asserting it consumed every byte.
pub(crate) fn dec(bytes: &[u8], version: ProtocolVersion) -> Result<Packet, DecodeError> {
    let buf = Bytes::copy_from_slice(bytes);
    match decode(&buf, version, &Limits::default())? {
        Some((packet, used)) => {
            assert_eq!(used, bytes.len(), "consumed");
            Ok(packet)
        }
        None => panic!("incomplete packet {bytes:02x?}"),
    }
}

/// Encode, asserting `encoded_len` agrees.
pub(crate) fn enc(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut buf = BytesMut::new();
    packet.encode(version, &mut buf).expect("encodes");
    assert_eq!(buf.len(), packet.encoded_len(version), "encoded_len");
    buf.to_vec()
}

/// `bytes` decode to `packet` and `packet` encodes to `bytes`.
pub(crate) fn good(bytes: &[u8], version: ProtocolVersion, packet: Packet) {
    assert_eq!(
        dec(bytes, version),
        Ok(packet.clone()),
        "decode {bytes:02x?} {version:?}"
    );
    assert_eq!(enc(&packet, version), bytes, "encode {version:?}");
}

/// `bytes` fail to decode with exactly `err`.
pub(crate) fn bad(bytes: &[u8], version: ProtocolVersion, err: DecodeError) {
    assert_eq!(
        dec(bytes, version),
        Err(err),
        "decode {bytes:02x?} {version:?}"
    );
}
