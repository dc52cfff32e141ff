//! Async I/O over raw descriptors the engine hands out: a pty master
//! ([`FdStream`], where `EIO` after the last slave closed is end of file)
//! and the monitor's `SOCK_SEQPACKET` attach connection ([`Packets`]).

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use nix::errno::Errno;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Sets `O_NONBLOCK` on `fd`.
pub fn set_nonblocking(fd: &impl AsFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(fd.as_fd(), FcntlArg::F_GETFL)?;
    fcntl(
        fd.as_fd(),
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    )?;
    Ok(())
}

/// Registers `fd` with tokio's reactor.
fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd takes ownership of the OwnedFd, so the descriptor
    // stays open and refers to the same file until the AsyncFd is dropped,
    // and OwnedFd::as_raw_fd always returns that same number.
    unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
}

/// A nonblocking descriptor read and written as a byte stream.
pub struct FdStream {
    fd: AsyncFd<OwnedFd>,
}

impl FdStream {
    pub fn new(fd: OwnedFd) -> io::Result<FdStream> {
        set_nonblocking(&fd)?;
        Ok(FdStream { fd: register(fd)? })
    }
}

impl AsyncRead for FdStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), unfilled).map_err(io::Error::from)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // A pty master reads EIO once no slave is open: the end.
                Ok(Err(e)) if e.raw_os_error() == Some(Errno::EIO as i32) => return Poll::Ready(Ok(())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for FdStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(io::Error::from)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A nonblocking `SOCK_SEQPACKET` connection: one message per call.
pub struct Packets {
    fd: AsyncFd<OwnedFd>,
}

impl Packets {
    pub fn new(fd: OwnedFd) -> io::Result<Packets> {
        set_nonblocking(&fd)?;
        Ok(Packets { fd: register(fd)? })
    }

    /// Receives one packet into `buf`; 0 means the peer closed.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| {
                nix::sys::socket::recv(fd.as_raw_fd(), buf, nix::sys::socket::MsgFlags::empty())
                    .map_err(io::Error::from)
            }) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends one packet whole.
    pub async fn send(&self, packet: &[u8]) -> io::Result<()> {
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| {
                nix::sys::socket::send(fd.as_raw_fd(), packet, nix::sys::socket::MsgFlags::MSG_NOSIGNAL)
                    .map_err(io::Error::from)
            }) {
                Ok(result) => return result.map(drop),
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_pipe_reads_and_writes_as_a_stream() {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let mut r = FdStream::new(r).unwrap();
        let mut w = FdStream::new(w).unwrap();
        w.write_all(b"hello").await.unwrap();
        drop(w);
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
    }

    #[tokio::test]
    async fn a_pty_master_ends_when_the_slave_closes() {
        let (master, n) = berth_runtime::pty::open_master(std::path::Path::new("/dev/ptmx")).unwrap();
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/dev/pts/{n}"))
            .unwrap();
        let mut m = FdStream::new(master).unwrap();
        std::io::Write::write_all(&mut &slave, b"x\n").unwrap();
        drop(slave);
        let mut got = Vec::new();
        m.read_to_end(&mut got).await.unwrap();
        assert!(got.starts_with(b"x"), "{got:?}");
    }

    #[tokio::test]
    async fn packets_keep_their_boundaries() {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).unwrap();
        let (a, b) = (Packets::new(a).unwrap(), Packets::new(b).unwrap());
        a.send(b"one").await.unwrap();
        a.send(b"two!").await.unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(b.recv(&mut buf).await.unwrap(), 3);
        assert_eq!(b.recv(&mut buf).await.unwrap(), 4);
        drop(a);
        assert_eq!(b.recv(&mut buf).await.unwrap(), 0);
    }
}
