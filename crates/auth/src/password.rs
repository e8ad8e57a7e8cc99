//! Mosquitto password files: parsing, verifying, hashing (to be written).
