//! y-websocket messages (CONTRACT §11) on one board, as its document's actor takes them: each
//! frame decoded, an update decoded and applied to the document, an awareness update applied to
//! the board's table with the server's limits, a sync step 1 answered; then the document read
//! the way REST serves it (`content`), saved (`state`) and restored from that state. Frames are
//! length-prefixed: two bytes (big-endian) then the frame.
//!
//! yrs may panic on hostile input; the server decodes and applies under `catch_unwind` (see
//! `whiteboard::wire` and `whiteboard::content`), so this target silences the panic hook that
//! libFuzzer installs to abort: a panic the server catches is no crash, one it does not catch
//! still fails the run (libfuzzer-sys aborts when the closure itself panics).
//!
//! yrs reserves room for the lengths an update declares with `try_reserve`, which fails softly
//! where memory runs out. Under the fuzzer a reservation of gigabytes is reported as an
//! out-of-memory before it can fail, so this target's allocator refuses any single allocation
//! above [`LARGEST`], as a machine without that memory would: a fallible reservation then
//! fails as it would there, and an infallible one still aborts the run (a real finding).
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};

use libfuzzer_sys::fuzz_target;
use server::whiteboard::awareness::AwarenessTable;
use server::whiteboard::content;
use server::whiteboard::wire::{self, ClientMessage};
use std::sync::Once;
use yrs::{ReadTxn, Transact};

static QUIET_PANICS: Once = Once::new();

/// The largest single allocation the target's allocator grants.
const LARGEST: usize = 512 * 1024 * 1024;

struct Capped;

// SAFETY: every call is `System`'s with the caller's own arguments, or a null pointer, which
// `GlobalAlloc` allows as the answer "this allocation failed".
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > LARGEST {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > LARGEST {
            return std::ptr::null_mut();
        }
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > LARGEST {
            return std::ptr::null_mut();
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Capped = Capped;

fuzz_target!(|data: &[u8]| {
    QUIET_PANICS.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let doc = content::new_doc();
    let mut awareness = AwarenessTable::default();
    let mut rest = data;
    let mut frames: u64 = 0;
    while rest.len() >= 2 && frames < 32 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let frame = &rest[2..2 + len];
        rest = &rest[2 + len..];
        frames += 1;
        let Ok(message) = wire::decode(frame) else {
            continue;
        };
        match message {
            ClientMessage::SyncStep1(sv) => {
                let _ = wire::sync_step2(doc.transact().encode_state_as_update_v1(&sv));
            }
            ClientMessage::Update(bytes) => {
                if bytes.len() > wire::MAX_UPDATE {
                    continue;
                }
                if let Some(update) = wire::decode_update(&bytes) {
                    let _ = content::apply_decoded(&doc, update);
                }
            }
            ClientMessage::Awareness(update) => {
                let conn = frames % 3;
                if let Ok(Some(accepted)) = awareness.apply(
                    conn,
                    update,
                    wire::MAX_AWARENESS_STATE,
                    wire::MAX_AWARENESS_CLIENTS,
                ) {
                    let _ = wire::awareness(accepted);
                }
                if frames % 5 == 0 {
                    let _ = awareness.leave(conn);
                }
            }
            ClientMessage::QueryAwareness => {
                let _ = wire::awareness(awareness.all());
            }
            ClientMessage::Auth => {}
        }
    }
    let _ = content::content_json(&doc);
    if let Some(saved) = content::state(&doc) {
        let _ = content::restore(&content::new_doc(), &saved);
    }
});
