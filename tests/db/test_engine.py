"""Which database the settings pick, and the SQLite file's setup."""

from sqlalchemy.engine import make_url

from src.db.engine import create_db_engine
from src.settings import DEFAULT_SQLITE_URL, ApiSettings, JobSettings


def test_sqlite_file_under_data_by_default(monkeypatch):
    for name in ("DATABASE_URL", "MYSQL_SERVER"):
        monkeypatch.delenv(name, raising=False)
    assert ApiSettings().resolved_database_url() == DEFAULT_SQLITE_URL
    assert make_url(DEFAULT_SQLITE_URL).database.startswith("data/")


def test_an_empty_mysql_server_means_sqlite(monkeypatch):
    # The local runner drops MYSQL_* (or leaves them empty) when no server is configured.
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("MYSQL_SERVER", "")
    assert JobSettings().resolved_database_url() == DEFAULT_SQLITE_URL


def test_mysql_variables_build_a_pymysql_url(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("MYSQL_SERVER", "mysql")
    monkeypatch.setenv("MYSQL_PORT", "3307")
    monkeypatch.setenv("MYSQL_USER", "user")
    monkeypatch.setenv("MYSQL_PASSWORD", "p@ss/word")
    monkeypatch.setenv("MYSQL_DATABASE", "sample_db")
    url = make_url(ApiSettings().resolved_database_url())
    assert url.drivername == "mysql+pymysql"
    assert (url.host, url.port, url.username, url.password, url.database) == (
        "mysql",
        3307,
        "user",
        "p@ss/word",
        "sample_db",
    )


def test_database_url_overrides_mysql_variables(monkeypatch):
    monkeypatch.setenv("MYSQL_SERVER", "mysql")
    monkeypatch.setenv("DATABASE_URL", "sqlite:///elsewhere.sqlite3")
    assert JobSettings().resolved_database_url() == "sqlite:///elsewhere.sqlite3"


def test_sqlite_engine_creates_the_folder_and_uses_wal(tmp_path):
    engine = create_db_engine(f"sqlite:///{tmp_path / 'nested' / 'batch.sqlite3'}")
    with engine.connect() as connection:
        mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar_one()
    assert mode == "wal"
    assert (tmp_path / "nested").is_dir()
