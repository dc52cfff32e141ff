//! Removing what a test berthd's built-in network leaves on the host by
//! design (the bridge and its iptables chains outlive berthd on a real node):
//! tests give each berthd its own bridge and chain prefix and call
//! [`remove_test_network`] when done, even after a failure.

/// Delete the bridge, its rules and chains: see
/// [`berth_hack::host_cleanup::remove_berth_network`].
pub use berth_hack::host_cleanup::remove_berth_network as remove_test_network;
