//! The binary envelope entries are stored in (placeholder, being written).
