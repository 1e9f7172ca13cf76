"""`python -m src.api`: the batch API, PORT and the database from the environment."""

from src.api.app import load_batch_labels
from src.settings import ApiSettings
from src.startup import or_exit
from src.web import serve


def main() -> None:
    settings = or_exit("api", ApiSettings)
    # Checked here so a missing label file stops start-up with one line, not a traceback.
    or_exit("api", lambda: load_batch_labels(settings.label_filepath))
    serve("src.api.app:app", settings, settings.port)


if __name__ == "__main__":
    main()
