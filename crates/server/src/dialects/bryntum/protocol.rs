//! The messages of Bryntum's gantt-websocket-server protocol: parsing what clients send (the
//! v2 `{"command", "data"}` form, the v1 flat form, camelCase command names) and spelling what
//! the server sends. Pure.

use serde_json::{Map, Value, json};

pub type Object = Map<String, Value>;

/// What a client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Login,
    Logout,
    Projects,
    Dataset,
    ProjectChange,
    Reset,
    RequestVersionAutosave,
    LoadVersionContent,
    Version,
    Users,
}

impl Command {
    pub fn parse(name: &str) -> Option<Command> {
        Some(match name {
            "login" => Command::Login,
            "logout" => Command::Logout,
            "projects" => Command::Projects,
            "dataset" => Command::Dataset,
            "project_change" | "projectChange" => Command::ProjectChange,
            "reset" => Command::Reset,
            "request_version_autosave" | "requestVersionAutoSave" | "requestVersionAutosave" => {
                Command::RequestVersionAutosave
            }
            "load_version_content" | "loadVersionContent" => Command::LoadVersionContent,
            "version" => Command::Version,
            "users" => Command::Users,
            _ => return None,
        })
    }

    /// The name used in answers and errors (the v2 name; `loadVersionContent` is what Bryntum's
    /// client listens for).
    pub fn name(self) -> &'static str {
        match self {
            Command::Login => "login",
            Command::Logout => "logout",
            Command::Projects => "projects",
            Command::Dataset => "dataset",
            Command::ProjectChange => "project_change",
            Command::Reset => "reset",
            Command::RequestVersionAutosave => "request_version_autosave",
            Command::LoadVersionContent => "loadVersionContent",
            Command::Version => "version",
            Command::Users => "users",
        }
    }
}

/// One parsed client message.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// The command as the client spelled it (echoed in errors about it).
    pub name: String,
    pub command: Option<Command>,
    pub data: Object,
}

/// Why a frame is not a message; the text is what the client is told.
#[derive(Debug, Clone, PartialEq)]
pub struct BadMessage {
    pub command: Value,
    pub error: &'static str,
}

/// Parses one text frame. `{"command": C, "data": {…}}` is the v2 form; a message without an
/// object `data` is the v1 flat form, whose other top-level keys are the data.
pub fn parse(text: &str) -> Result<Incoming, BadMessage> {
    let value: Value = serde_json::from_str(text).map_err(|_| BadMessage {
        command: Value::Null,
        error: "the message is not valid JSON",
    })?;
    let Value::Object(mut object) = value else {
        return Err(BadMessage {
            command: Value::Null,
            error: "the message must be a JSON object",
        });
    };
    let name = match object.remove("command") {
        Some(Value::String(name)) if !name.is_empty() && name.len() <= 64 => name,
        Some(other @ Value::String(_)) => {
            return Err(BadMessage {
                command: other,
                error: "unknown command",
            });
        }
        Some(_) | None => {
            return Err(BadMessage {
                command: Value::Null,
                error: "the message needs a command",
            });
        }
    };
    let data = match object.remove("data") {
        Some(Value::Object(data)) => data,
        Some(Value::Null) | None => object,
        Some(_) => {
            return Err(BadMessage {
                command: json!(name),
                error: "data must be an object",
            });
        }
    };
    Ok(Incoming {
        command: Command::parse(&name),
        name,
        data,
    })
}

/// `{"command": C, "data": D}`.
pub fn message(command: &str, data: Value) -> String {
    json!({ "command": command, "data": data }).to_string()
}

/// The bytes a `project_change` frame starts with for a socket that calls its project `label`:
/// `{"command":"project_change","data":{"project":LABEL,"revisions":`. The rest of the frame
/// ([`change_body`]) is the same for every socket, so it is encoded once per event and each
/// socket writes its own head before it (one `writev`, see `net::direct`).
pub fn change_head(label: &Value) -> bytes::Bytes {
    bytes::Bytes::from(format!(
        r#"{{"command":"project_change","data":{{"project":{label},"revisions":"#
    ))
}

/// The shared rest of a `project_change` frame: `[REVISION]}}`.
pub fn change_body(revision: &Value) -> bytes::Bytes {
    bytes::Bytes::from(format!("[{revision}]}}}}"))
}

/// The bytes a `dataset` answer starts with for a socket that calls its project `label`:
/// `{"command":"dataset","data":{"project":LABEL,"dataset":`. The rest ([`dataset_body`]) is
/// the same for every socket that loads the same read, so a node encodes it once.
pub fn dataset_head(label: &Value) -> bytes::Bytes {
    bytes::Bytes::from(format!(
        r#"{{"command":"dataset","data":{{"project":{label},"dataset":"#
    ))
}

/// The shared rest of a `dataset` answer: `DATASET}}`.
pub fn dataset_body(dataset: &Value) -> bytes::Bytes {
    bytes::Bytes::from(format!("{dataset}}}}}"))
}

/// `{"command": C, "error": E}`: a plain message, never a stack trace.
pub fn error(command: &str, error: &str) -> String {
    json!({ "command": command, "error": error }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_dataset_answer_is_the_whole_message() {
        let dataset = json!({"tasksData": [{"id": "a", "name": "A"}], "project": {}});
        for label in [json!(1), json!("1"), json!("2f1c…"), json!(null)] {
            let mut joined = dataset_head(&label).to_vec();
            joined.extend_from_slice(&dataset_body(&dataset));
            let whole = message("dataset", json!({ "project": label, "dataset": dataset }));
            assert_eq!(String::from_utf8(joined).unwrap(), whole);
        }
    }

    #[test]
    fn parses_both_forms_and_aliases() {
        let v2 = parse(r#"{"command":"login","data":{"login":"a","password":"b"}}"#).unwrap();
        assert_eq!(v2.command, Some(Command::Login));
        assert_eq!(v2.data["login"], json!("a"));
        let v1 = parse(r#"{"command":"projectChange","project":1,"revisions":[]}"#).unwrap();
        assert_eq!(v1.command, Some(Command::ProjectChange));
        assert_eq!(v1.data["project"], json!(1));
        for alias in [
            "requestVersionAutoSave",
            "request_version_autosave",
            "loadVersionContent",
            "load_version_content",
        ] {
            let text = format!(r#"{{"command":"{alias}"}}"#);
            assert!(parse(&text).unwrap().command.is_some(), "{alias}");
        }
        let unknown = parse(r#"{"command":"fly","data":{}}"#).unwrap();
        assert_eq!(unknown.command, None);
        assert_eq!(unknown.name, "fly");
    }

    #[test]
    fn a_change_frame_is_a_head_per_label_and_one_shared_body() {
        let body = change_body(&json!({"revision": "server-1"}));
        for label in [json!(1), json!("0190-ab"), json!("1")] {
            let mut frame = change_head(&label).to_vec();
            frame.extend_from_slice(&body);
            let frame: Value = serde_json::from_slice(&frame).unwrap();
            assert_eq!(
                frame,
                json!({"command": "project_change", "data": {"project": label, "revisions": [{"revision": "server-1"}]}})
            );
        }
    }

    #[test]
    fn refuses_bad_shapes_plainly() {
        for (text, error) in [
            ("not json", "the message is not valid JSON"),
            ("[1,2]", "the message must be a JSON object"),
            (r#"{"data":{}}"#, "the message needs a command"),
            (r#"{"command":5}"#, "the message needs a command"),
            (
                r#"{"command":"login","data":[1]}"#,
                "data must be an object",
            ),
        ] {
            assert_eq!(parse(text).unwrap_err().error, error, "{text}");
        }
        assert_eq!(
            error("dataset", "no such project"),
            r#"{"command":"dataset","error":"no such project"}"#
        );
    }
}
