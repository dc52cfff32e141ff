//! A tiny classic-BPF assembler for seccomp filters: instructions with
//! symbolic jump targets, resolved into `sock_filter`s once the program is
//! complete. Only the instructions the compiler needs exist.

use super::{Result, SeccompError};

// Instruction classes and modes (linux/bpf_common.h).
const BPF_LD: u16 = 0x00;
const BPF_ALU: u16 = 0x04;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_W: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_AND: u16 = 0x50;
const BPF_JA: u16 = 0x00;
const BPF_JEQ: u16 = 0x10;
const BPF_JGT: u16 = 0x20;
const BPF_JGE: u16 = 0x30;
const BPF_K: u16 = 0x00;

/// The kernel's limit on filter length (BPF_MAXINSNS).
pub(crate) const MAX_INSNS: usize = 4096;

/// Offsets in `struct seccomp_data`.
pub(crate) const OFF_NR: u32 = 0;
pub(crate) const OFF_ARCH: u32 = 4;
const OFF_ARGS: u32 = 16;

/// Offsets of the low and high 32-bit halves of syscall argument `index`.
pub(crate) fn arg_offsets(index: u32) -> (u32, u32) {
    let base = OFF_ARGS + 8 * index;
    if cfg!(target_endian = "little") {
        (base, base + 4)
    } else {
        (base + 4, base)
    }
}

/// A jump target: the next instruction, or a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Next,
    Label(usize),
}

/// Conditional jump kinds (`A <op> k`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cond {
    Eq,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy)]
enum Insn {
    Load(u32),
    And(u32),
    Jump(Cond, u32, Target, Target),
    Goto(usize),
    Ret(u32),
}

/// A program under construction.
#[derive(Debug, Default)]
pub(crate) struct Assembler {
    insns: Vec<Insn>,
    /// Label id → instruction index it marks.
    labels: Vec<Option<usize>>,
}

impl Assembler {
    /// A new, not yet placed label.
    pub(crate) fn new_label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }

    /// Places `label` at the next instruction.
    pub(crate) fn place(&mut self, label: usize) {
        self.labels[label] = Some(self.insns.len());
    }

    /// `A = seccomp_data[offset]` (32 bits).
    pub(crate) fn load(&mut self, offset: u32) {
        self.insns.push(Insn::Load(offset));
    }

    /// `A &= k`.
    pub(crate) fn and(&mut self, k: u32) {
        self.insns.push(Insn::And(k));
    }

    /// `if A <cond> k goto t else goto f`.
    pub(crate) fn jump(&mut self, cond: Cond, k: u32, t: Target, f: Target) {
        self.insns.push(Insn::Jump(cond, k, t, f));
    }

    /// Unconditional jump (32-bit offset: any distance).
    pub(crate) fn goto(&mut self, label: usize) {
        self.insns.push(Insn::Goto(label));
    }

    /// `return k`.
    pub(crate) fn ret(&mut self, k: u32) {
        self.insns.push(Insn::Ret(k));
    }

    /// Resolves labels into a kernel program.
    pub(crate) fn finish(self) -> Result<Vec<libc::sock_filter>> {
        if self.insns.len() > MAX_INSNS {
            return Err(SeccompError::TooLarge(self.insns.len()));
        }
        let pos = |label: usize| self.labels[label].expect("every label is placed");
        let rel = |at: usize, target: Target| -> Result<u8> {
            match target {
                Target::Next => Ok(0),
                Target::Label(l) => {
                    let off = pos(l).checked_sub(at + 1).expect("jumps only go forward");
                    u8::try_from(off).map_err(|_| SeccompError::JumpTooFar(off))
                }
            }
        };
        let mut out = Vec::with_capacity(self.insns.len());
        for (at, insn) in self.insns.iter().enumerate() {
            let (code, jt, jf, k) = match *insn {
                Insn::Load(off) => (BPF_LD | BPF_W | BPF_ABS, 0, 0, off),
                Insn::And(k) => (BPF_ALU | BPF_AND | BPF_K, 0, 0, k),
                Insn::Jump(cond, k, t, f) => {
                    let op = match cond {
                        Cond::Eq => BPF_JEQ,
                        Cond::Gt => BPF_JGT,
                        Cond::Ge => BPF_JGE,
                    };
                    (BPF_JMP | op | BPF_K, rel(at, t)?, rel(at, f)?, k)
                }
                Insn::Goto(l) => {
                    let off = pos(l).checked_sub(at + 1).expect("jumps only go forward");
                    (BPF_JMP | BPF_JA, 0, 0, off as u32)
                }
                Insn::Ret(k) => (BPF_RET | BPF_K, 0, 0, k),
            };
            out.push(libc::sock_filter { code, jt, jf, k });
        }
        Ok(out)
    }
}

/// Runs a program on a `seccomp_data` (for tests: checks what the kernel
/// would decide without installing anything).
#[cfg(test)]
pub(crate) fn run(prog: &[libc::sock_filter], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
    let word = |off: u32| -> u32 {
        match off {
            OFF_NR => nr,
            OFF_ARCH => arch,
            o if (OFF_ARGS..OFF_ARGS + 48).contains(&o) => {
                let i = ((o - OFF_ARGS) / 8) as usize;
                let (lo, _) = arg_offsets(i as u32);
                if o == lo {
                    args[i] as u32
                } else {
                    (args[i] >> 32) as u32
                }
            }
            o => panic!("load from unexpected offset {o}"),
        }
    };
    let mut a = 0u32;
    let mut pc = 0usize;
    loop {
        let i = prog[pc];
        pc += 1;
        match i.code {
            c if c == BPF_LD | BPF_W | BPF_ABS => a = word(i.k),
            c if c == BPF_ALU | BPF_AND | BPF_K => a &= i.k,
            c if c == BPF_JMP | BPF_JA => pc += i.k as usize,
            c if c == BPF_RET | BPF_K => return i.k,
            c => {
                let taken = match c & 0xf0 {
                    BPF_JEQ => a == i.k,
                    BPF_JGT => a > i.k,
                    BPF_JGE => a >= i.k,
                    _ => panic!("unexpected opcode {c:#x}"),
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_resolve_to_relative_offsets() {
        let mut a = Assembler::default();
        let out = a.new_label();
        a.load(OFF_NR);
        a.jump(Cond::Eq, 39, Target::Next, Target::Label(out));
        a.ret(1);
        a.place(out);
        a.ret(2);
        let prog = a.finish().unwrap();
        assert_eq!(prog.len(), 4);
        assert_eq!((prog[1].jt, prog[1].jf), (0, 1));
        assert_eq!(run(&prog, 39, 0, [0; 6]), 1);
        assert_eq!(run(&prog, 40, 0, [0; 6]), 2);
    }

    #[test]
    fn far_conditional_jumps_are_an_error_and_goto_is_not_limited() {
        let mut a = Assembler::default();
        let far = a.new_label();
        a.load(OFF_NR);
        a.jump(Cond::Eq, 1, Target::Label(far), Target::Next);
        for _ in 0..300 {
            a.ret(0);
        }
        a.place(far);
        a.ret(1);
        assert!(matches!(a.finish(), Err(SeccompError::JumpTooFar(300))));

        let mut a = Assembler::default();
        let far = a.new_label();
        a.goto(far);
        for _ in 0..300 {
            a.ret(0);
        }
        a.place(far);
        a.ret(7);
        assert_eq!(run(&a.finish().unwrap(), 0, 0, [0; 6]), 7);
    }

    #[test]
    fn oversized_programs_are_refused() {
        let mut a = Assembler::default();
        for _ in 0..=MAX_INSNS {
            a.ret(0);
        }
        assert!(matches!(a.finish(), Err(SeccompError::TooLarge(_))));
    }
}
