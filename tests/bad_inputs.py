"""Bad request bodies every endpoint that takes rows must reject with 422 (shared by tests)."""

from src.schemas import RowSpec, request_model

# The committed iris models' rows, which the unit tests of the schema and body checks use.
IRIS_ROWS = RowSpec.of_width(4, [5.1, 3.5, 1.4, 0.2])
IrisRequest = request_model(IRIS_ROWS)

# (case id, JSON text, a fragment the 422 body must contain to name the problem)
BAD_BODIES = [
    ("missing-data", '{"rows": [[1, 2, 3, 4]]}', "Field required"),
    ("empty-list", '{"data": []}', "at least 1 item"),
    ("short-row", '{"data": [[1, 2, 3]]}', "at least 4 items"),
    ("long-row", '{"data": [[1, 2, 3, 4, 5]]}', "at most 4 items"),
    ("string", '{"data": [[1, "2", 3, 4]]}', "valid number"),
    ("boolean", '{"data": [[1, true, 3, 4]]}', "valid number"),
    ("null", '{"data": [[1, null, 3, 4]]}', "valid number"),
    ("nan", '{"data": [[1, NaN, 3, 4]]}', "finite number"),
    ("infinity", '{"data": [[1, Infinity, 3, 4]]}', "finite number"),
    ("minus-infinity", '{"data": [[1, -Infinity, 3, 4]]}', "finite number"),
    ("row-not-a-list", '{"data": [5.1]}', "valid list"),
    ("not-json", '{"data": [[1, 2, 3, 4]', "JSON decode error"),
    ("not-an-object", "[[1, 2, 3, 4]]", "valid dictionary"),
]
BAD_BODY_IDS = [case[0] for case in BAD_BODIES]
JSON_HEADERS = {"Content-Type": "application/json"}
