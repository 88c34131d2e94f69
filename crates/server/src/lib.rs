//! The liveplan server.
