//! Stored scripts: `{"id": "name"}`, resolved at load.
