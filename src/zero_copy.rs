//! Writing a Fetch response without copying its records in user space.
//!
//! A Fetch response comes as parts ([`handlers::Part`]): encoded bytes, and
//! record sets read from segment files. On a plaintext TCP connection a record
//! set goes to the socket with `sendfile(2)` straight from the page cache (no
//! copy through the broker's memory; on loopback the reader copies from the
//! page cache itself). On TLS, where the bytes must be encrypted anyway, or
//! when `sendfile` cannot send them, a record set is written from the
//! segment's memory map: one copy, by the kernel, into the socket.

use std::io;
use std::os::fd::AsRawFd;

use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter, Interest};
use tokio::net::TcpStream;

use crate::handlers::Part;

/// The TCP socket under a connection's stream, when bytes may be sent to it
/// straight from a file: plaintext connections only.
pub trait Socket {
    fn plain_tcp(&self) -> Option<&TcpStream> {
        None
    }
}

impl Socket for TcpStream {
    fn plain_tcp(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

impl Socket for tokio_rustls::server::TlsStream<TcpStream> {}

impl Socket for tokio_rustls::TlsStream<TcpStream> {}

/// Parts smaller than this are written like any bytes (buffered).
const MIN_SENDFILE: usize = 64 * 1024;

/// Writes the parts of a response in order: the bytes written, and how
/// many of them were sent from files.
pub async fn write_parts<S: AsyncWrite + Socket + Unpin>(
    writer: &mut BufWriter<S>,
    parts: &[Part],
) -> io::Result<(usize, usize)> {
    let (mut written, mut from_files) = (0, 0);
    for part in parts {
        let from_file = part
            .file
            .as_ref()
            .filter(|_| part.bytes.len() >= MIN_SENDFILE);
        let mut sent = 0;
        if let Some((file, pos)) = from_file
            && writer.get_ref().plain_tcp().is_some()
        {
            // What is buffered goes first.
            writer.flush().await?;
            let tcp = writer.get_ref().plain_tcp().expect("checked");
            sent = send_file(tcp, file, *pos, part.bytes.len()).await?;
        }
        // The rest (all of it unless sent from the file) from memory; a
        // part past the buffer's size goes straight to the socket.
        writer.write_all(&part.bytes[sent..]).await?;
        written += part.bytes.len();
        from_files += sent;
    }
    Ok((written, from_files))
}

/// Sends `len` bytes of `file` from `pos` to `tcp`; fewer only when the file
/// ends first or `sendfile` cannot serve this file (the caller writes the
/// rest from memory).
async fn send_file(
    tcp: &TcpStream,
    file: &std::fs::File,
    pos: u64,
    len: usize,
) -> io::Result<usize> {
    let mut sent = 0;
    while sent < len {
        tcp.writable().await?;
        let step = tcp.try_io(Interest::WRITABLE, || {
            let mut off = (pos + sent as u64) as libc::off_t;
            // SAFETY: both descriptors are open (owned by `tcp` and `file`,
            // borrowed for the call) and `off` is a valid pointer.
            let n =
                unsafe { libc::sendfile(tcp.as_raw_fd(), file.as_raw_fd(), &mut off, len - sent) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match step {
            Ok(0) => break,
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            // A file system or socket that `sendfile` does not serve: the
            // caller writes the rest from memory.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
                ) =>
            {
                tracing::debug!("sendfile refused ({e}); writing from memory");
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}
