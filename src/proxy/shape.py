"""The proxy's row width, learnt from its class services at start-up.

Each class service states its model's input in its v2 model metadata (`[-1, F]`). The
proxy takes F from them before it serves, so it checks rows exactly as its services
will. Services that disagree stop start-up with one line naming them; a service that
changes its model later is named by /health/all (`width_mismatch`).
"""

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence

import aiohttp
from pydantic import ValidationError

from src.errors import StartupError
from src.oip.schemas import ModelMetadata
from src.schemas import RowSpec

logger = logging.getLogger(__name__)

# Between two rounds of asking services that did not answer yet.
RETRY_SECONDS = 0.25


def metadata_path(service: str) -> str:
    return f"/v2/models/{service}"


def input_width(metadata: ModelMetadata) -> int:
    """F of a class model's metadata (`inputs: [{shape: [-1, F]}]`), or ValueError."""
    if len(metadata.inputs) != 1 or len(metadata.inputs[0].shape) != 2:
        raise ValueError(f"expected one input of shape [-1, F], got {metadata.inputs}")
    width = metadata.inputs[0].shape[1]
    if width < 1:
        raise ValueError(f"input shape {metadata.inputs[0].shape} has no fixed width")
    return width


async def _ask(session: aiohttp.ClientSession, url: str, service: str) -> tuple[int, list] | None:
    """(F, the service's example row) from one service URL; None when it cannot tell yet."""
    try:
        async with session.get(url + metadata_path(service)) as response:
            if response.status != 200:
                return None
            width = input_width(ModelMetadata.model_validate_json(await response.read()))
        async with session.get(url + "/metadata") as response:
            seed_metadata = await response.json() if response.status == 200 else {}
    except (aiohttp.ClientError, TimeoutError, ValueError, ValidationError):
        return None
    samples = seed_metadata.get("data_sample") if isinstance(seed_metadata, dict) else None
    sample = samples[0] if isinstance(samples, list) and samples else None
    return width, sample


async def learn_row_spec(
    services: Mapping[str, Sequence[str]], wait: float, call_timeout: float
) -> RowSpec:
    """The row width every answering service agrees on, with one's example row.

    Waits up to `wait` seconds for a first answer, then `call_timeout` more for the rest
    (a service that stays silent is left to its circuit, as at any other time). Raises
    StartupError when none answers or when they disagree.
    """
    deadline = time.monotonic() + wait
    answers: dict[str, tuple[int, list]] = {}
    first_answer_at: float | None = None
    timeout = aiohttp.ClientTimeout(total=call_timeout)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            pending = [name for name in services if name not in answers]
            found = await asyncio.gather(
                *(_first_answer(session, services[name], name) for name in pending)
            )
            answers.update(
                {name: answer for name, answer in zip(pending, found, strict=True) if answer}
            )
            now = time.monotonic()
            if len(answers) == len(services):
                break
            if answers:
                first_answer_at = first_answer_at or now
                if now >= first_answer_at + call_timeout:
                    break
            elif now >= deadline:
                raise StartupError(
                    f"no class service told its model's input within {wait:g} s "
                    f"(GET /v2/models/<name> of {', '.join(services)})"
                )
            await asyncio.sleep(RETRY_SECONDS)
    widths: dict[int, list[str]] = {}
    for name, (width, _) in answers.items():
        widths.setdefault(width, []).append(name)
    if len(widths) > 1:
        told = "; ".join(f"{', '.join(names)}: {width}" for width, names in sorted(widths.items()))
        raise StartupError(f"class services disagree about the row width (numbers per row: {told})")
    silent = sorted(set(services) - set(answers))
    (width,) = widths
    if silent:
        logger.warning(
            "rows of %d numbers, as told by %s; no answer yet from %s",
            width,
            ", ".join(answers),
            ", ".join(silent),
        )
    samples = [sample for _, sample in answers.values() if isinstance(sample, list)]
    sample = next((row for row in samples if len(row) == width), None)
    try:
        return RowSpec.of_width(width, sample)
    except (TypeError, ValueError):  # an example row that is not numbers
        return RowSpec.of_width(width)


async def _first_answer(
    session: aiohttp.ClientSession, urls: Sequence[str], service: str
) -> tuple[int, list] | None:
    for url in urls:
        if answer := await _ask(session, str(url).rstrip("/"), service):
            return answer
    return None
