//! The server's side of a MySQL connection: the answer to each command
//! (OK, ERR, result sets counted row by row, prepare answers), in the
//! order the commands were sent.

use super::{
    Awaited, CLIENT_DEPRECATE_EOF, CLIENT_PROTOCOL_41, ENGINE, Message, MySqlConn, Outcome,
    PACKET_FULL, Reading, SERVER_MORE_RESULTS_EXIST, SERVER_STATUS_CURSOR_EXISTS, Side, lenenc,
};

impl MySqlConn {
    /// A packet of the answer to the oldest command awaiting one (packets
    /// with none awaited are the tail of an answer not followed).
    pub(super) fn answer(
        &mut self,
        first: Option<u8>,
        body: &[u8],
        size: usize,
        out: &mut Vec<Message>,
    ) {
        let deprecate_eof = self.caps & CLIENT_DEPRECATE_EOF != 0;
        // EOF, or the OK that ends rows with DEPRECATE_EOF: 0xfe and less
        // than a full packet (a row starting 0xfe is 16 MiB or more).
        let end = first == Some(0xfe) && size < PACKET_FULL;
        let Some(front) = self.awaited.front_mut() else {
            return;
        };
        match front {
            Awaited::Statement { rows, reading } => match (*reading, first) {
                (Reading::Start, Some(0x00)) => {
                    let (affected, status) = ok_fields(body).unwrap_or((0, 0));
                    *rows = Some(rows.unwrap_or(0) + affected);
                    if status & SERVER_MORE_RESULTS_EXIST == 0 {
                        let rows = *rows;
                        self.complete(Outcome::Ok, rows, None, out);
                    }
                }
                (_, Some(0xff)) => {
                    let code = sqlstate(body, self.caps);
                    self.complete(Outcome::Error, None, code, out);
                }
                // LOCAL INFILE: the client sends a file, then the OK.
                (Reading::Start, Some(0xfb)) => {}
                (Reading::Start, _) => match lenenc(body) {
                    Some((0, _)) | None => {
                        self.complete(Outcome::Unknown, None, None, out);
                        self.fail(out, Side::Server, "malformed result set header");
                    }
                    Some((n, _)) => {
                        *reading = Reading::Columns(n);
                        // A result set: its rows are counted, none yet.
                        *rows = Some(rows.unwrap_or(0));
                    }
                },
                (Reading::Columns(n), _) => {
                    *reading = match (n - 1, deprecate_eof) {
                        (0, true) => Reading::Rows,
                        (0, false) => Reading::ColumnsEof,
                        (n, _) => Reading::Columns(n),
                    };
                }
                (Reading::ColumnsEof, _) if end => {
                    *reading = Reading::Rows;
                    // A cursor was opened: rows come by COM_STMT_FETCH.
                    if eof_status(body) & SERVER_STATUS_CURSOR_EXISTS != 0 {
                        self.complete(Outcome::Ok, None, None, out);
                    }
                }
                (Reading::ColumnsEof | Reading::Rows, _) if end => {
                    let status = if deprecate_eof {
                        ok_fields(body).map_or(0, |(_, s)| s)
                    } else {
                        eof_status(body)
                    };
                    if status & SERVER_MORE_RESULTS_EXIST != 0 {
                        *reading = Reading::Start;
                    } else {
                        let rows = *rows;
                        self.complete(Outcome::Ok, rows, None, out);
                    }
                }
                (Reading::ColumnsEof | Reading::Rows, _) => {
                    *reading = Reading::Rows;
                    *rows = Some(rows.unwrap_or(0) + 1);
                }
            },
            Awaited::Prepare { statement, skip } => match (*skip, first) {
                (None, Some(0x00)) if body.len() >= 9 => {
                    let id = u32::from_le_bytes([body[1], body[2], body[3], body[4]]);
                    let columns = u32::from(u16::from_le_bytes([body[5], body[6]]));
                    let params = u32::from(u16::from_le_bytes([body[7], body[8]]));
                    let eofs = if deprecate_eof {
                        0
                    } else {
                        u32::from(params > 0) + u32::from(columns > 0)
                    };
                    let statement = statement.clone();
                    self.prepared(id, statement);
                    match columns + params + eofs {
                        0 => {
                            self.awaited.pop_front();
                        }
                        n => {
                            if let Some(Awaited::Prepare { skip, .. }) = self.awaited.front_mut() {
                                *skip = Some(n);
                            }
                        }
                    }
                }
                (None, _) => {
                    // Refused (a syntax error, a missing table): the
                    // attempt is reported, failed.
                    let statement = statement.clone();
                    let code = (first == Some(0xff))
                        .then(|| sqlstate(body, self.caps))
                        .flatten();
                    self.awaited.pop_front();
                    let who = (&self.user, &self.database);
                    out.push(Message::sent(ENGINE, who, "prepared", statement, 0));
                    self.respond(Outcome::Error, None, code, out);
                }
                (Some(n), _) => {
                    if n <= 1 {
                        self.awaited.pop_front();
                    } else {
                        *skip = Some(n - 1);
                    }
                }
            },
            Awaited::InitDb(db) => {
                if first == Some(0x00) {
                    self.database = Some(std::mem::take(db));
                }
                self.awaited.pop_front();
            }
            Awaited::ChangeUser { user, database } => match first {
                Some(0x00) => {
                    self.user = Some(std::mem::take(user));
                    self.database = database.take();
                    self.awaited.pop_front();
                }
                Some(0xff) => {
                    self.awaited.pop_front();
                }
                _ => {}
            },
            Awaited::Other => {
                self.awaited.pop_front();
            }
        }
    }

    /// The oldest statement awaiting an answer got it.
    fn complete(
        &mut self,
        outcome: Outcome,
        rows: Option<u64>,
        sqlstate: Option<String>,
        out: &mut Vec<Message>,
    ) {
        self.awaited.pop_front();
        self.respond(outcome, rows, sqlstate, out);
    }
}

/// An OK packet's rows affected and status flags (0x00 or 0xfe, rows
/// affected, last insert id, status).
fn ok_fields(body: &[u8]) -> Option<(u64, u16)> {
    let rest = body.get(1..)?;
    let (affected, a) = lenenc(rest)?;
    let (_, b) = lenenc(&rest[a..])?;
    let status = rest.get(a + b..a + b + 2)?;
    Some((affected, u16::from_le_bytes([status[0], status[1]])))
}

/// An EOF packet's status flags (0xfe, warnings, status).
fn eof_status(body: &[u8]) -> u16 {
    body.get(3..5)
        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}

/// The SQLSTATE of an ERR packet (0xff, code, `#`, five characters);
/// its message may quote values and is not read.
fn sqlstate(body: &[u8], caps: u32) -> Option<String> {
    if caps & CLIENT_PROTOCOL_41 == 0 || body.get(3) != Some(&b'#') {
        return None;
    }
    let code = body.get(4..9)?;
    code.iter()
        .all(u8::is_ascii_alphanumeric)
        .then(|| String::from_utf8_lossy(code).into_owned())
}
