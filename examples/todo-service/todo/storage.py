"""Lists and items in SQLite."""

import sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    list_name TEXT NOT NULL,
    text TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS tokens (hash TEXT PRIMARY KEY);
"""


class Storage:
    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, timeout=5.0)
        self.db.executescript(SCHEMA)

    def token_hashes(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT hash FROM tokens")}

    def add_item(self, list_name: str, text: str) -> int:
        cursor = self.db.execute(
            "INSERT INTO items (list_name, text) VALUES (?, ?)", (list_name, text)
        )
        self.db.commit()
        return cursor.lastrowid

    def items(self, list_name: str) -> list[tuple[int, str, bool]]:
        rows = self.db.execute(
            "SELECT id, text, done FROM items WHERE list_name = ? ORDER BY id", (list_name,)
        )
        return [(row[0], row[1], bool(row[2])) for row in rows]
