//! [`Pending`]: the answer to one request, awaited on any executor or
//! waited for on any thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use futures_channel::oneshot;

use crate::embedder::truncate_dimensions;
use crate::error::{Error, Result};

/// What a request's caller receives: the vectors, or the error.
pub(crate) type Answer = Result<Vec<Vec<f32>>>;

/// The answer to one request: a future for async callers (on any executor:
/// it needs no runtime), or [`wait`](Self::wait) for blocking ones.
///
/// Dropping it gives the request up: its texts are skipped if they have
/// not run yet.
#[must_use = "a request is skipped when its answer is dropped"]
#[derive(Debug)]
pub struct Pending {
    inner: Inner,
    tokens: usize,
    truncated: usize,
    /// The dimensions the request keeps, and whether they are normalised
    /// again (see [`EmbedOptions::dimensions`](crate::EmbedOptions::dimensions)).
    dimensions: Option<(usize, bool)>,
}

#[derive(Debug)]
enum Inner {
    /// Answered at once (an empty request).
    Ready(Option<Answer>),
    /// Answered by the worker.
    Queued(oneshot::Receiver<Answer>),
}

impl Pending {
    pub(crate) fn ready(answer: Answer) -> Self {
        Pending {
            inner: Inner::Ready(Some(answer)),
            tokens: 0,
            truncated: 0,
            dimensions: None,
        }
    }

    pub(crate) fn queued(rx: oneshot::Receiver<Answer>, tokens: usize, truncated: usize) -> Self {
        Pending {
            inner: Inner::Queued(rx),
            tokens,
            truncated,
            dimensions: None,
        }
    }

    /// This answer with its vectors cut to `n` dimensions, normalised again
    /// when `renormalize`.
    pub(crate) fn shaped(mut self, n: usize, renormalize: bool) -> Self {
        self.dimensions = Some((n, renormalize));
        self
    }

    /// The request's tokens as counted at admission (special tokens
    /// included, after truncation): what a server reports as usage.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// How many of the request's texts truncation cut to the model's
    /// sequence length at admission (0 when it refused truncation): what a
    /// server tells its caller.
    pub fn truncated(&self) -> usize {
        self.truncated
    }

    /// Blocks the current thread until the answer comes.
    ///
    /// # Errors
    ///
    /// The request's error (see [`EmbedService::submit`](super::EmbedService::submit)).
    pub fn wait(self) -> Answer {
        block_on(self, None).unwrap_or(Err(Error::TimedOut {
            after: Duration::ZERO,
        }))
    }

    /// As [`wait`](Self::wait), for at most `timeout`; then the request is
    /// given up (its texts are skipped if they have not run).
    ///
    /// # Errors
    ///
    /// [`Error::TimedOut`] after `timeout`; otherwise as [`wait`](Self::wait).
    pub fn wait_timeout(self, timeout: Duration) -> Answer {
        block_on(self, Some(Instant::now() + timeout))
            .unwrap_or(Err(Error::TimedOut { after: timeout }))
    }
}

impl Future for Pending {
    type Output = Answer;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        let this = self.get_mut();
        let answer = match &mut this.inner {
            Inner::Ready(answer) => Poll::Ready(answer.take().unwrap_or(Err(Error::Closed))),
            // The worker answers every request it accepts, also when it
            // fails; a sender dropped unanswered means the process is
            // tearing the worker down.
            Inner::Queued(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(Error::Closed))),
        };
        match this.dimensions {
            Some((n, renormalize)) => answer.map(|a| {
                a.map(|mut vectors| {
                    for v in &mut vectors {
                        truncate_dimensions(v, n, renormalize);
                    }
                    vectors
                })
            }),
            None => answer,
        }
    }
}

/// Wakes a parked thread.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` on this thread until it is ready (`Some`) or `deadline`
/// passes (`None`). Written here because the only runtime-free executors
/// on crates.io come with a whole futures stack; this one is a park/unpark
/// loop.
fn block_on<F: Future>(future: F, deadline: Option<Instant>) -> Option<F::Output> {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return Some(out);
        }
        match deadline {
            None => std::thread::park(),
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    return None;
                }
                std::thread::park_timeout(d - now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocked_thread_is_woken_by_the_answer() {
        let (tx, rx) = oneshot::channel::<Answer>();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            tx.send(Ok(vec![vec![1.0]])).unwrap();
        });
        let started = Instant::now();
        assert_eq!(Pending::queued(rx, 0, 0).wait().unwrap(), vec![vec![1.0]]);
        assert!(started.elapsed() >= Duration::from_millis(50));
        sender.join().unwrap();
    }

    #[test]
    fn a_timeout_gives_up_and_closes_the_channel() {
        let (tx, rx) = oneshot::channel::<Answer>();
        let err = Pending::queued(rx, 0, 0)
            .wait_timeout(Duration::from_millis(20))
            .unwrap_err();
        assert!(matches!(err, Error::TimedOut { .. }), "{err}");
        assert!(tx.is_canceled(), "the worker can see the caller gave up");
    }

    #[test]
    fn a_dropped_sender_is_an_error_not_a_hang() {
        let (tx, rx) = oneshot::channel::<Answer>();
        drop(tx);
        assert!(matches!(
            Pending::queued(rx, 0, 0).wait(),
            Err(Error::Closed)
        ));
        assert_eq!(Pending::ready(Ok(Vec::new())).wait().unwrap().len(), 0);
    }
}
