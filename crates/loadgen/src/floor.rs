//! `floor`: what one delivery costs the kernel of this machine, with no server at all.
//!
//! A server that sends each event to each subscriber in a write of its own cannot spend less
//! CPU per delivery than that write costs. `floor` measures it: it opens N loopback TCP
//! connections to a sink process of its own (`floor-sink`, which only reads), then writes a
//! frame of `--size` bytes to every connection R times a second, one blocking `write` per
//! connection and frame, from one thread, and reports its own CPU time per write. That is the
//! server's fan-out reduced to its system calls, so the server's figure minus this one is what
//! the server itself adds. On loopback the kernel runs the receiver's TCP input inside the
//! sender's write (as it does for the server), so this floor includes that part too.
//!
//! `--io-uring` sends each round through io_uring instead (tokio-uring, up to 1,024 sends per
//! submission; io_uring's worker threads, if any, are threads of this process and count in
//! its CPU), which is what a server batching its fan-out's system calls could reach.

use crate::args::FloorArgs;
use crate::procfs;
use anyhow::{Context, bail};
use serde::Serialize;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

#[derive(Debug, Serialize)]
pub struct FloorSummary {
    pub io_uring: bool,
    pub connections: usize,
    pub rate: u32,
    pub duration_secs: u64,
    pub frame_bytes: usize,
    pub writes: u64,
    pub window_secs: f64,
    pub writer_cpu_secs: f64,
    pub writer_cpu_us_per_write: f64,
    pub sink_cpu_secs: f64,
    pub load_average: f64,
}

/// Accepts connections on 127.0.0.1 and reads them until they close; prints its address on the
/// first line of stdout and ends when stdin closes (its parent is gone).
pub async fn sink() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let accept = async {
        loop {
            let (mut stream, _) = listener.accept().await?;
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
        #[allow(unreachable_code)]
        Ok::<(), anyhow::Error>(())
    };
    let mut stdin = tokio::io::stdin();
    let mut byte = [0u8; 1];
    tokio::select! {
        result = accept => result,
        _ = stdin.read(&mut byte) => Ok(()),
    }
}

struct Sink {
    child: Child,
    address: SocketAddr,
}

impl Sink {
    fn start(cpus: Option<&str>) -> anyhow::Result<Sink> {
        let exe = std::env::current_exe().context("locating this executable")?;
        let mut command = match cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpus).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        let mut child = command
            .arg("floor-sink")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the sink")?;
        let stdout = child.stdout.take().context("sink stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let address = line.trim().parse().context("the sink's address")?;
        Ok(Sink { child, address })
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn floor(args: &FloorArgs) -> anyhow::Result<FloorSummary> {
    let sink = Sink::start(args.sink_cpus.as_deref())?;
    let mut connections = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        connections.push(TcpStream::connect(sink.address).context("connecting to the sink")?);
    }
    // Let the sink accept everything before timing anything.
    std::thread::sleep(Duration::from_secs(1));
    let frame = vec![b'x'; args.size];
    let sink_pid = sink.child.id().to_string();
    let ticks = u64::from(args.rate) * args.duration;
    let period = Duration::from_secs_f64(1.0 / f64::from(args.rate));
    let cpu_before = procfs::sample("self")?.cpu_secs;
    let sink_before = procfs::sample(&sink_pid)?.cpu_secs;
    let start = Instant::now();
    let writes = if args.io_uring {
        write_through_io_uring(connections, frame, ticks, period, start)?
    } else {
        write_one_by_one(&mut connections, &frame, ticks, period, start)?
    };
    let window = start.elapsed().as_secs_f64();
    let cpu = procfs::sample("self")?.cpu_secs - cpu_before;
    let sink_cpu = procfs::sample(&sink_pid)?.cpu_secs - sink_before;
    if window > args.duration as f64 * 1.5 {
        bail!(
            "the writer fell behind: {window:.1} s for a {} s run",
            args.duration
        );
    }
    Ok(FloorSummary {
        io_uring: args.io_uring,
        connections: args.connections,
        rate: args.rate,
        duration_secs: args.duration,
        frame_bytes: args.size,
        writes,
        window_secs: window,
        writer_cpu_secs: cpu,
        writer_cpu_us_per_write: cpu * 1e6 / writes as f64,
        sink_cpu_secs: sink_cpu,
        load_average: std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or(f64::NAN),
    })
}

/// Sleeps until the start of round `tick`.
fn wait_for_round(start: Instant, period: Duration, tick: u64) -> anyhow::Result<()> {
    let due = start + period * u32::try_from(tick).context("too many ticks")?;
    if let Some(wait) = due.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    Ok(())
}

/// One blocking `write` per connection and frame.
fn write_one_by_one(
    connections: &mut [TcpStream],
    frame: &[u8],
    ticks: u64,
    period: Duration,
    start: Instant,
) -> anyhow::Result<u64> {
    let mut writes = 0u64;
    for tick in 0..ticks {
        wait_for_round(start, period, tick)?;
        for connection in connections.iter_mut() {
            connection.write_all(frame).context("writing to the sink")?;
            writes += 1;
        }
    }
    Ok(writes)
}

/// Every connection's write of a round submitted together through io_uring.
fn write_through_io_uring(
    connections: Vec<TcpStream>,
    frame: Vec<u8>,
    ticks: u64,
    period: Duration,
    start: Instant,
) -> anyhow::Result<u64> {
    let frame = bytes::Bytes::from(frame);
    tokio_uring::builder().entries(1024).start(async move {
        let connections: Vec<tokio_uring::net::TcpStream> = connections
            .into_iter()
            .map(tokio_uring::net::TcpStream::from_std)
            .collect();
        let mut writes = 0u64;
        for tick in 0..ticks {
            wait_for_round(start, period, tick)?;
            let round = connections
                .iter()
                .map(|connection| connection.write_all(frame.clone()));
            for (result, _) in futures::future::join_all(round).await {
                result.context("writing to the sink")?;
                writes += 1;
            }
        }
        Ok(writes)
    })
}
