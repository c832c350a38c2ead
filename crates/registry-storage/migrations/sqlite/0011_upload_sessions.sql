-- Upload sessions of blob stores shared by several instances (an object store): the bytes
-- received so far, and as JSON the hasher's saved state and the segments holding the bytes.
-- Appends replace a row only while `size` is what they started from (compare-and-set).

CREATE TABLE upload_sessions (
    id TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    state TEXT NOT NULL
);
