//! Streams, subscribers, bounded queues, replay-then-live, presence, and the Bus trait.
