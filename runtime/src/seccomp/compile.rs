//! OCI `LinuxSeccomp` → seccomp BPF program.
//!
//! Program shape:
//!
//! ```text
//!   A = arch;  if A != native → KILL_PROCESS           (foreign ABIs)
//!   A = nr;    [x86_64] if A >= 0x40000000 → KILL_PROCESS (x32 ABI)
//!   per syscall (ascending number):
//!     only an unconditional rule:  if A == nr → return action
//!     conditional rules:           if A != nr → next syscall
//!                                  rule 1: args match? → return action 1
//!                                  …
//!                                  return unconditional action, else default
//!   return default action
//! ```
//!
//! Semantics, as runc + libseccomp give them:
//! - the arguments of one rule are ANDed; when one rule names the same
//!   argument index more than once, each argument becomes its own rule
//!   (ORed) — how moby's `personality` allow-list is written;
//! - conditional rules of a syscall are tried in spec order before its
//!   unconditional rule; of several unconditional rules the first counts;
//! - comparisons are on the full 64-bit argument; `SCMP_CMP_MASKED_EQ` is
//!   `(arg & value) == valueTwo`;
//! - `errnoRet` defaults to EPERM for `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE`;
//! - unknown syscall names for this architecture are skipped (debug log);
//! - only the native architecture is filtered: syscalls made through another
//!   ABI (i386 `int 0x80`, x32) kill the process, whatever `architectures`
//!   lists (libseccomp's "bad arch" action). Listing them is accepted.

use std::collections::BTreeMap;

use oci_spec::runtime::{
    LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

use super::bpf::{arg_offsets, Assembler, Cond, Target, OFF_ARCH, OFF_NR};
use super::syscalls::{syscall_number, NATIVE_ARCH, NATIVE_AUDIT_ARCH, X32_SYSCALL_BIT};
use super::{Result, SeccompError, SeccompProgram};

/// A compiled rule: ANDed argument conditions and the return value.
#[derive(Debug, Clone)]
struct Rule {
    args: Vec<LinuxSeccompArg>,
    ret: u32,
}

#[derive(Debug, Default)]
struct Group {
    conditional: Vec<Rule>,
    unconditional: Option<u32>,
}

/// The kernel return value of an action (`errno` for ERRNO/TRACE).
pub(crate) fn action_value(action: LinuxSeccompAction, errno: Option<u32>) -> Result<u32> {
    let data = |e: Option<u32>| e.unwrap_or(libc::EPERM as u32) & libc::SECCOMP_RET_DATA;
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => libc::SECCOMP_RET_KILL_THREAD,
        LinuxSeccompAction::ScmpActKillProcess => libc::SECCOMP_RET_KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => libc::SECCOMP_RET_TRAP,
        LinuxSeccompAction::ScmpActErrno => libc::SECCOMP_RET_ERRNO | data(errno),
        LinuxSeccompAction::ScmpActTrace => libc::SECCOMP_RET_TRACE | data(errno),
        LinuxSeccompAction::ScmpActLog => libc::SECCOMP_RET_LOG,
        LinuxSeccompAction::ScmpActAllow => libc::SECCOMP_RET_ALLOW,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(SeccompError::UnsupportedAction(action.to_string()));
        }
    })
}

fn flag_value(flag: LinuxSeccompFilterFlag) -> Result<libc::c_ulong> {
    match flag {
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => Ok(libc::SECCOMP_FILTER_FLAG_TSYNC),
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => Ok(libc::SECCOMP_FILTER_FLAG_LOG),
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => Ok(libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW),
        // Only meaningful with a notify listener, which berth does not offer.
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
            Err(SeccompError::UnsupportedFlag(flag.to_string()))
        }
    }
}

/// Compiles `spec` for the native architecture.
pub fn compile(spec: &LinuxSeccomp) -> Result<SeccompProgram> {
    let mut flags = 0;
    for &flag in spec.flags().iter().flatten() {
        flags |= flag_value(flag)?;
    }
    let default_ret = action_value(spec.default_action(), spec.default_errno_ret())?;
    for arch in spec.architectures().iter().flatten() {
        if *arch != NATIVE_ARCH {
            tracing::debug!(?arch, "non-native seccomp architecture: its syscalls kill the process");
        }
    }

    let mut groups: BTreeMap<u32, Group> = BTreeMap::new();
    for sc in spec.syscalls().iter().flatten() {
        let ret = action_value(sc.action(), sc.errno_ret())?;
        let args = sc.args().clone().unwrap_or_default();
        for arg in &args {
            if arg.index() >= 6 {
                return Err(SeccompError::ArgIndex {
                    syscalls: sc.names().join(","),
                    index: arg.index(),
                });
            }
        }
        let repeated = args
            .iter()
            .enumerate()
            .any(|(i, a)| args[..i].iter().any(|b| b.index() == a.index()));
        let rules: Vec<Rule> = if args.is_empty() {
            Vec::new()
        } else if repeated {
            args.iter().map(|a| Rule { args: vec![*a], ret }).collect()
        } else {
            vec![Rule { args, ret }]
        };
        for name in sc.names() {
            let Some(nr) = syscall_number(name) else {
                tracing::debug!(syscall = %name, "seccomp: syscall unknown on this architecture, skipped");
                continue;
            };
            let group = groups.entry(nr).or_default();
            if rules.is_empty() {
                match group.unconditional {
                    None => group.unconditional = Some(ret),
                    Some(first) if first != ret => {
                        tracing::debug!(syscall = %name, "seccomp: second unconditional rule ignored")
                    }
                    Some(_) => {}
                }
            } else {
                group.conditional.extend(rules.iter().cloned());
            }
        }
    }

    let mut asm = Assembler::default();
    let native = asm.new_label();
    asm.load(OFF_ARCH);
    asm.jump(Cond::Eq, NATIVE_AUDIT_ARCH, Target::Label(native), Target::Next);
    asm.ret(libc::SECCOMP_RET_KILL_PROCESS);
    asm.place(native);
    asm.load(OFF_NR);
    if let Some(bit) = X32_SYSCALL_BIT {
        let native_abi = asm.new_label();
        asm.jump(Cond::Ge, bit, Target::Next, Target::Label(native_abi));
        asm.ret(libc::SECCOMP_RET_KILL_PROCESS);
        asm.place(native_abi);
    }
    for (nr, group) in groups {
        let fallback = group.unconditional.unwrap_or(default_ret);
        if group.conditional.is_empty() {
            if fallback == default_ret {
                continue;
            }
            let skip = asm.new_label();
            asm.jump(Cond::Eq, nr, Target::Next, Target::Label(skip));
            asm.ret(fallback);
            asm.place(skip);
            continue;
        }
        let body = asm.new_label();
        let next = asm.new_label();
        asm.jump(Cond::Eq, nr, Target::Label(body), Target::Next);
        asm.goto(next);
        asm.place(body);
        for rule in &group.conditional {
            let fail = asm.new_label();
            for arg in &rule.args {
                emit_arg(&mut asm, arg, fail);
            }
            asm.ret(rule.ret);
            asm.place(fail);
        }
        asm.ret(fallback);
        asm.place(next);
    }
    asm.ret(default_ret);
    Ok(SeccompProgram::new(asm.finish()?, flags))
}

/// Emits the test of one argument: falls through when it holds, jumps to
/// `fail` otherwise. 64-bit values are compared as (high, low) halves.
fn emit_arg(asm: &mut Assembler, arg: &LinuxSeccompArg, fail: usize) {
    let (lo, hi) = arg_offsets(arg.index() as u32);
    let split = |v: u64| ((v >> 32) as u32, v as u32);
    let (vhi, vlo) = split(arg.value());
    let ok = asm.new_label();
    let (f, s, n) = (Target::Label(fail), Target::Label(ok), Target::Next);
    match arg.op() {
        LinuxSeccompOperator::ScmpCmpEq => {
            asm.load(hi);
            asm.jump(Cond::Eq, vhi, n, f);
            asm.load(lo);
            asm.jump(Cond::Eq, vlo, n, f);
        }
        LinuxSeccompOperator::ScmpCmpNe => {
            asm.load(hi);
            asm.jump(Cond::Eq, vhi, n, s);
            asm.load(lo);
            asm.jump(Cond::Eq, vlo, f, n);
        }
        LinuxSeccompOperator::ScmpCmpGt | LinuxSeccompOperator::ScmpCmpGe => {
            let low = if arg.op() == LinuxSeccompOperator::ScmpCmpGt {
                Cond::Gt
            } else {
                Cond::Ge
            };
            asm.load(hi);
            asm.jump(Cond::Gt, vhi, s, n);
            asm.jump(Cond::Eq, vhi, n, f);
            asm.load(lo);
            asm.jump(low, vlo, n, f);
        }
        LinuxSeccompOperator::ScmpCmpLt | LinuxSeccompOperator::ScmpCmpLe => {
            // Lt fails when arg >= value, Le when arg > value.
            let low = if arg.op() == LinuxSeccompOperator::ScmpCmpLt {
                Cond::Ge
            } else {
                Cond::Gt
            };
            asm.load(hi);
            asm.jump(Cond::Gt, vhi, f, n);
            asm.jump(Cond::Eq, vhi, n, s);
            asm.load(lo);
            asm.jump(low, vlo, f, n);
        }
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            let (mhi, mlo) = (vhi, vlo);
            let (dhi, dlo) = split(arg.value_two().unwrap_or(0));
            asm.load(hi);
            asm.and(mhi);
            asm.jump(Cond::Eq, dhi, n, f);
            asm.load(lo);
            asm.and(mlo);
            asm.jump(Cond::Eq, dlo, n, f);
        }
    }
    asm.place(ok);
}

#[cfg(test)]
mod tests {
    use super::super::bpf::run;
    use super::*;

    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;

    fn errno(e: i32) -> u32 {
        libc::SECCOMP_RET_ERRNO | e as u32
    }

    fn profile(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).unwrap()
    }

    fn nr(name: &str) -> u32 {
        syscall_number(name).unwrap()
    }

    /// What the kernel would return for `name(args…)` on the native arch.
    fn eval(p: &SeccompProgram, name: &str, args: [u64; 6]) -> u32 {
        run(p.instructions(), nr(name), NATIVE_AUDIT_ARCH, args)
    }

    #[test]
    fn default_and_listed_actions() {
        let p = compile(&profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                  {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                  {"names": ["mkdirat", "unshare"], "action": "SCMP_ACT_ERRNO"},
                  {"names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS"},
                  {"names": ["tkill"], "action": "SCMP_ACT_KILL"},
                  {"names": ["tgkill"], "action": "SCMP_ACT_TRAP"},
                  {"names": ["getuid"], "action": "SCMP_ACT_LOG"},
                  {"names": ["getgid"], "action": "SCMP_ACT_TRACE", "errnoRet": 7},
                  {"names": ["not_a_syscall"], "action": "SCMP_ACT_ERRNO"}
                ]}"#,
        ))
        .unwrap();
        assert_eq!(eval(&p, "getpid", [0; 6]), errno(libc::ENOSYS));
        assert_eq!(eval(&p, "mkdirat", [0; 6]), errno(libc::EPERM));
        assert_eq!(eval(&p, "unshare", [0; 6]), errno(libc::EPERM));
        assert_eq!(eval(&p, "kill", [0; 6]), libc::SECCOMP_RET_KILL_PROCESS);
        assert_eq!(eval(&p, "tkill", [0; 6]), libc::SECCOMP_RET_KILL_THREAD);
        assert_eq!(eval(&p, "tgkill", [0; 6]), libc::SECCOMP_RET_TRAP);
        assert_eq!(eval(&p, "getuid", [0; 6]), libc::SECCOMP_RET_LOG);
        assert_eq!(eval(&p, "getgid", [0; 6]), libc::SECCOMP_RET_TRACE | 7);
        assert_eq!(eval(&p, "read", [0; 6]), ALLOW);
    }

    #[test]
    fn default_errno_and_foreign_abis() {
        let p = compile(&profile(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 13,
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}"#,
        ))
        .unwrap();
        assert_eq!(eval(&p, "read", [0; 6]), ALLOW);
        assert_eq!(eval(&p, "write", [0; 6]), errno(libc::EACCES));
        // i386 ABI (AUDIT_ARCH_I386) and any other arch: killed.
        assert_eq!(
            run(p.instructions(), 3, 0x4000_0003, [0; 6]),
            libc::SECCOMP_RET_KILL_PROCESS
        );
        if let Some(bit) = X32_SYSCALL_BIT {
            assert_eq!(
                run(p.instructions(), nr("read") | bit, NATIVE_AUDIT_ARCH, [0; 6]),
                libc::SECCOMP_RET_KILL_PROCESS
            );
        }
    }

    #[test]
    fn argument_operators_compare_64_bit_values() {
        let rule = |op: &str, value: u64| {
            compile(&profile(&format!(
                r#"{{"defaultAction": "SCMP_ACT_ERRNO",
                    "syscalls": [{{"names": ["lseek"], "action": "SCMP_ACT_ALLOW",
                                  "args": [{{"index": 1, "value": {value}, "op": "{op}"}}]}}]}}"#
            )))
            .unwrap()
        };
        let v: u64 = 0x1_0000_0005;
        let probes: [u64; 7] = [0, 5, 0x1_0000_0004, v, 0x1_0000_0006, 0x2_0000_0000, u64::MAX];
        type Op = (&'static str, fn(u64, u64) -> bool);
        let ops: [Op; 6] = [
            ("SCMP_CMP_EQ", |a, b| a == b),
            ("SCMP_CMP_NE", |a, b| a != b),
            ("SCMP_CMP_LT", |a, b| a < b),
            ("SCMP_CMP_LE", |a, b| a <= b),
            ("SCMP_CMP_GT", |a, b| a > b),
            ("SCMP_CMP_GE", |a, b| a >= b),
        ];
        for (op, f) in ops {
            let p = rule(op, v);
            for a in probes {
                let want = if f(a, v) { ALLOW } else { errno(libc::EPERM) };
                assert_eq!(eval(&p, "lseek", [0, a, 0, 0, 0, 0]), want, "{op} arg={a:#x}");
            }
        }
    }

    #[test]
    fn masked_eq_and_anded_args() {
        let p = compile(&profile(
            r#"{"defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [
                  {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                   "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
                  {"names": ["mmap"], "action": "SCMP_ACT_ALLOW",
                   "args": [{"index": 2, "value": 1, "op": "SCMP_CMP_EQ"},
                            {"index": 3, "value": 34, "op": "SCMP_CMP_EQ"}]}
                ]}"#,
        ))
        .unwrap();
        let sigchld = libc::SIGCHLD as u64;
        assert_eq!(eval(&p, "clone", [sigchld, 0, 0, 0, 0, 0]), ALLOW);
        let newns = libc::CLONE_NEWNS as u64 | sigchld;
        assert_eq!(eval(&p, "clone", [newns, 0, 0, 0, 0, 0]), errno(libc::EPERM));
        let newuser = libc::CLONE_NEWUSER as u64;
        assert_eq!(eval(&p, "clone", [newuser, 0, 0, 0, 0, 0]), errno(libc::EPERM));
        assert_eq!(eval(&p, "mmap", [0, 0, 1, 34, 0, 0]), ALLOW);
        assert_eq!(eval(&p, "mmap", [0, 0, 1, 35, 0, 0]), errno(libc::EPERM));
        assert_eq!(eval(&p, "mmap", [0, 0, 3, 34, 0, 0]), errno(libc::EPERM));
    }

    #[test]
    fn repeated_index_means_or_and_conditional_before_unconditional() {
        let p = compile(&profile(
            r#"{"defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [
                  {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                   "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                            {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                            {"index": 0, "value": 4294967295, "op": "SCMP_CMP_EQ"}]},
                  {"names": ["socket"], "action": "SCMP_ACT_ALLOW"},
                  {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97,
                   "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_EQ"}]}
                ]}"#,
        ))
        .unwrap();
        for ok in [0u64, 8, 0xffff_ffff] {
            assert_eq!(eval(&p, "personality", [ok, 0, 0, 0, 0, 0]), ALLOW, "{ok}");
        }
        assert_eq!(eval(&p, "personality", [0x20, 0, 0, 0, 0, 0]), errno(libc::EPERM));
        assert_eq!(eval(&p, "socket", [40, 0, 0, 0, 0, 0]), errno(libc::EAFNOSUPPORT));
        assert_eq!(eval(&p, "socket", [2, 0, 0, 0, 0, 0]), ALLOW);
    }

    #[test]
    fn notify_bad_flags_and_bad_indexes_are_refused() {
        let err = compile(&profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_NOTIFY"}]}"#,
        ))
        .unwrap_err();
        assert!(err.to_string().contains("SCMP_ACT_NOTIFY"), "{err}");
        let err = compile(&profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}"#,
        ))
        .unwrap_err();
        assert!(err.to_string().contains("WAIT_KILLABLE_RECV"), "{err}");
        let err = compile(&profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                              "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}"#,
        ))
        .unwrap_err();
        assert!(err.to_string().contains("read"), "{err}");
        // Unknown action names never get this far: the spec does not parse.
        let bad: Result<LinuxSeccomp, _> = serde_json::from_str(r#"{"defaultAction": "SCMP_ACT_BOGUS"}"#);
        assert!(bad.unwrap_err().to_string().contains("SCMP_ACT_BOGUS"));
    }

    #[test]
    fn flags_are_passed_through() {
        let p = compile(&profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]}"#,
        ))
        .unwrap();
        assert_eq!(
            p.flags(),
            libc::SECCOMP_FILTER_FLAG_TSYNC | libc::SECCOMP_FILTER_FLAG_LOG | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
        );
        assert_eq!(eval(&p, "read", [0; 6]), ALLOW);
    }
}
