//! The Store trait, its SQLite implementation, migrations, the event log, and the backend conformance suite.
