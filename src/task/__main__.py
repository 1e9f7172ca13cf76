"""`python -m src.task`: the batch job (compose service `job`); `--once` runs one pass,
`--rescore` one pass and a rescoring of older model versions' predictions."""

from src.task.job import main

if __name__ == "__main__":
    main()
