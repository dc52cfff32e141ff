//! berth Linux engine: runs OCI runtime bundles (built in a later issue).
