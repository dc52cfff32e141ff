//! Removing what a test berthd's built-in network leaves on the host by
//! design (the bridge and its iptables chains outlive berthd on a real node):
//! tests give each berthd its own bridge and chain prefix and call
//! [`remove_test_network`] when done, even after a failure.

use std::process::{Command, Stdio};

/// Delete the bridge, every iptables rule tagged with it (berth tags its
/// rules `berth:<bridge>:…` / `berth:<chain prefix>:jump`) or containing one
/// of `extra_needles`, and the chains `<chain_prefix>-*` themselves.
pub fn remove_test_network(bridge: &str, chain_prefix: &str, extra_needles: &[String]) {
    let _ = Command::new("ip").args(["link", "del", bridge]).output();
    let mut needles = extra_needles.to_vec();
    needles.push(format!("berth:{bridge}:"));
    needles.push(format!("berth:{chain_prefix}:jump"));
    needles.push(format!("-j {chain_prefix}-"));
    delete_iptables_rules(&needles);
    for table in ["nat", "filter"] {
        for chain in chains_with_prefix(table, &format!("{chain_prefix}-")) {
            let _ = Command::new("iptables")
                .args(["-w", "-t", table, "-F", &chain])
                .output();
            let _ = Command::new("iptables")
                .args(["-w", "-t", table, "-X", &chain])
                .output();
        }
    }
}

/// Deletes every iptables rule (nat and filter) containing one of `needles`,
/// and the `CNI-*` chains those rules jump to.
pub fn delete_iptables_rules(needles: &[String]) {
    for table in ["nat", "filter"] {
        let saved = iptables_save(table);
        let mut chains = Vec::new();
        for line in saved
            .lines()
            .filter(|l| l.starts_with("-A ") && needles.iter().any(|n| l.contains(n.as_str())))
        {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let Some(target) = words.iter().position(|w| *w == "-j").and_then(|i| words.get(i + 1)) {
                if target.starts_with("CNI-") {
                    chains.push(target.to_string());
                }
            }
            let delete = format!("iptables -w -t {table} -D {}", &line[3..]);
            let _ = Command::new("sh").args(["-c", &delete]).output();
        }
        for chain in chains {
            let _ = Command::new("iptables")
                .args(["-w", "-t", table, "-F", &chain])
                .output();
            let _ = Command::new("iptables")
                .args(["-w", "-t", table, "-X", &chain])
                .output();
        }
    }
}

fn chains_with_prefix(table: &str, prefix: &str) -> Vec<String> {
    iptables_save(table)
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| c.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

fn iptables_save(table: &str) -> String {
    Command::new("iptables-save")
        .args(["-t", table])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}
