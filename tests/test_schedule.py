import json

import pytest

from lsd import Schedule, ScheduleError


def test_uniform_schedule_grid_and_nfe():
    s = Schedule.uniform("euler", 8)
    assert s.nfe == 8 and len(s.times) == 9
    assert s.times[0] == 1.0 and s.times[-1] == pytest.approx(1e-5)
    assert all(a > b for a, b in zip(s.times, s.times[1:]))
    assert s.coefficients == (1.0,) * 8 and s.convention == "scale"


def test_json_round_trip(tmp_path):
    s = Schedule("tweedie", [1.0, 0.6, 0.2, 1e-5], [1.0, 0.5, 2.0], convention="power",
                 metadata={"method": "lsd", "backbone": "toy", "loss": [0.3, 0.1]})
    path = tmp_path / "sched.json"
    s.save(path)
    t = Schedule.load(path)
    assert t == s and t.metadata == s.metadata and t.nfe == 3
    assert json.loads(path.read_text())["format"] == "lsd.schedule/1"


def _valid():
    return Schedule.uniform("euler", 3).to_dict()


@pytest.mark.parametrize("change, field", [
    ({"base": "heun"}, "schedule.base"),
    ({"convention": "log"}, "schedule.convention"),
    ({"times": [1.0, 0.5, 0.5, 1e-5]}, "schedule.times[2]"),
    ({"times": [1.0, 0.2, 0.5, 1e-5]}, "schedule.times[2]"),
    ({"times": [1.5, 0.5, 0.2, 1e-5]}, "schedule.times[0]"),
    ({"times": [1.0, 0.5, 0.2, 0.0]}, "schedule.times[3]"),
    ({"times": [1.0, float("nan"), 0.2, 1e-5]}, "schedule.times[1]"),
    ({"times": [1.0]}, "schedule.times"),
    ({"coefficients": [1.0, 1.0]}, "schedule.coefficients"),
    ({"coefficients": [1.0, -0.1, 1.0]}, "schedule.coefficients[1]"),
    ({"coefficients": [1.0, float("inf"), 1.0]}, "schedule.coefficients[1]"),
    ({"coefficients": [1.0, "x", 1.0]}, "schedule.coefficients"),
    ({"nfe": 4}, "schedule.nfe"),
    ({"format": "other"}, "schedule.format"),
    ({"extra": 1}, "unknown field"),
    ({"temperature": 0}, "schedule.temperature"),
    ({"temperature": None}, "schedule.temperature"),
    ({"coefficients": []}, "schedule.coefficients"),  # empty is not "all ones"
    ({"metadata": ["a"]}, "schedule.metadata"),
    ({"base": ["euler"]}, "schedule.base"),
    ({"nfe": "three"}, "schedule.nfe"),
])
def test_invalid_schedules_are_refused_naming_the_field(tmp_path, change, field):
    d = {**_valid(), **change}
    with pytest.raises(ScheduleError, match=field.replace("[", r"\[").replace("]", r"\]")) as e:
        Schedule.from_dict(d)
    assert "\n" not in str(e.value)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ScheduleError, match=str(path)):
        Schedule.load(path)


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(ScheduleError, match="not found"):
        Schedule.load(tmp_path / "nope.json")
    (tmp_path / "g.json").write_text("{not json")
    with pytest.raises(ScheduleError, match="not valid JSON"):
        Schedule.load(tmp_path / "g.json")
    with pytest.raises(ScheduleError, match="schedule.steps"):
        Schedule.uniform("euler", 0)
    with pytest.raises(ScheduleError, match="schedule.steps"):  # refused at once, not after minutes of work
        Schedule.uniform("euler", 10**9)
    with pytest.raises(ScheduleError, match="is a folder"):
        Schedule.load(tmp_path)
    (tmp_path / "b.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ScheduleError, match="not a text file"):
        Schedule.load(tmp_path / "b.json")
