use serde::{Deserialize, Serialize};

/// A position in commit order: the writing transaction's id, then the event's global position.
/// Global positions alone are not in commit order (a slow transaction commits a smaller position
/// after a larger one); `(tx_id, position)` read below the snapshot's xmin is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Cursor {
    pub tx_id: i64,
    pub position: i64,
}
