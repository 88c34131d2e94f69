//! An [`AppChannelLog`] in memory: one node's history of the app's channels, lost on restart
//! (a new `stream_id` then tells resuming clients so). The store-backed log replaces it in
//! a cluster; it is also the tests' double.

use crate::pusher::app_log::{
    AppChannelEvent, AppChannelLog, AppChannelPosition, AppLogError, KEEP_EVENTS, KEEP_FOR,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use uuid::Uuid;

#[derive(Default)]
pub struct MemoryAppChannelLog {
    channels: Mutex<HashMap<String, Stream>>,
}

struct Stream {
    stream_id: String,
    last_serial: i64,
    events: VecDeque<AppChannelEvent>,
}

impl Stream {
    fn trim(&mut self, now: DateTime<Utc>) {
        let keep_for = chrono::Duration::from_std(KEEP_FOR).unwrap_or(chrono::Duration::MAX);
        while self.events.len() > KEEP_EVENTS
            || self.events.front().is_some_and(|e| now - e.at > keep_for)
        {
            self.events.pop_front();
        }
    }
}

#[async_trait]
impl AppChannelLog for MemoryAppChannelLog {
    async fn append(
        &self,
        channels: &[String],
        event: &str,
        data: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<AppChannelEvent>, AppLogError> {
        let mut all = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        let mut stored = Vec::with_capacity(channels.len());
        for channel in channels {
            let stream = all.entry(channel.clone()).or_insert_with(|| Stream {
                stream_id: Uuid::new_v4().simple().to_string(),
                last_serial: 0,
                events: VecDeque::new(),
            });
            stream.last_serial += 1;
            let event = AppChannelEvent {
                channel: channel.clone(),
                serial: stream.last_serial,
                event: event.to_owned(),
                data: data.to_owned(),
                at: now,
            };
            stream.events.push_back(event.clone());
            stream.trim(now);
            stored.push(event);
        }
        Ok(stored)
    }

    async fn after(
        &self,
        channel: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<AppChannelEvent>, AppLogError> {
        let all = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        Ok(all
            .get(channel)
            .map(|stream| {
                stream
                    .events
                    .iter()
                    .filter(|e| e.serial > after)
                    .take(limit)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn position(&self, channel: &str) -> Result<Option<AppChannelPosition>, AppLogError> {
        let all = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        Ok(all.get(channel).map(|stream| AppChannelPosition {
            stream_id: stream.stream_id.clone(),
            first_serial: stream
                .events
                .front()
                .map_or(stream.last_serial + 1, |e| e.serial),
            last_serial: stream.last_serial,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serials_count_per_channel_and_history_reads_back() {
        let log = MemoryAppChannelLog::default();
        let now = Utc::now();
        let channels = vec!["a".to_owned(), "b".to_owned()];
        log.append(&channels, "e", "1", now).await.unwrap();
        let second = log.append(&channels[..1], "e", "2", now).await.unwrap();
        assert_eq!(second[0].serial, 2);
        let after = log.after("a", 1, 10).await.unwrap();
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].data, "2");
        let position = log.position("b").await.unwrap().unwrap();
        assert_eq!((position.first_serial, position.last_serial), (1, 1));
        assert!(log.position("c").await.unwrap().is_none());
    }
}
