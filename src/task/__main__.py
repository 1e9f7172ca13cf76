"""`python -m src.task`: the batch job (compose service `job`); `--once` runs one pass."""

from src.task.job import main

if __name__ == "__main__":
    main()
