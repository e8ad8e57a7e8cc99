//! Shared workload: ~110-byte MQTT-like records (64 B payload + header).
pub struct Gen { state: u64, pub msg_id: u64 }

impl Gen {
    pub fn new() -> Self { Gen { state: 0x9E37_79B9_7F4A_7C15, msg_id: 0 } }
    fn next_u64(&mut self) -> u64 {
        // xorshift64*: payloads are pseudo-random, so compression cannot cheat.
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Encodes one record body into `out` (cleared first): 111 bytes.
    pub fn record(&mut self, out: &mut Vec<u8>) {
        out.clear();
        let id = self.msg_id;
        self.msg_id += 1;
        let client = format!("client-{:09}", id % 1000); // 16 B
        let topic = format!("sensors/dev/{:04}", id % 977); // 16 B
        out.push(client.len() as u8);
        out.extend_from_slice(client.as_bytes());
        out.push(topic.len() as u8);
        out.extend_from_slice(topic.as_bytes());
        out.extend_from_slice(&id.to_be_bytes()); // msg id
        out.extend_from_slice(&((id % 65535) as u16 + 1).to_be_bytes()); // packet id
        out.push(1); // qos
        out.extend_from_slice(&64u16.to_be_bytes());
        for _ in 0..8 {
            let v = self.next_u64();
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}
