#!/usr/bin/env python3
"""MPXJ differential oracle for liveplan's CPM engine.

Reads the networks written by `cargo run -p liveplan-cpm --example oracle_gen`
(each with liveplan's own schedule), schedules every network with MPXJ's
MicrosoftScheduler, and compares every output field of every task:
early/late start/finish (dates), total float, free float, critical.

Usage: mpxj_oracle.py NETWORKS.json [--report REPORT.txt] [--time]
Exit status 0 when every network matches, 1 otherwise.
"""
import argparse
import datetime
import json
import sys
import time

import jpype
import jpype.imports  # noqa: F401
import mpxj  # noqa: F401  (puts the MPXJ jars on the class path)

jpype.startJVM()

from java.time import DayOfWeek, LocalDate, LocalDateTime  # noqa: E402
from org.mpxj import (  # noqa: E402
    ConstraintType,
    Duration,
    ProjectCalendarDays,
    ProjectFile,
    RelationType,
    TimeUnit,
)
from org.mpxj.cpm import MicrosoftScheduler  # noqa: E402

RelationBuilder = jpype.JClass("org.mpxj.Relation$Builder")
NORMALIZE = False

# liveplan link type -> MPXJ. Never pass numeric codes between systems.
LINK = {
    "FS": RelationType.FINISH_START,
    "SS": RelationType.START_START,
    "FF": RelationType.FINISH_FINISH,
    "SF": RelationType.START_FINISH,
}
# liveplan constraint -> (MPXJ constraint, date is a start (08:00) or a finish (17:00)).
CONSTRAINT = {
    "Asap": (ConstraintType.AS_SOON_AS_POSSIBLE, None),
    "Alap": (ConstraintType.AS_LATE_AS_POSSIBLE, None),
    "Snet": (ConstraintType.START_NO_EARLIER_THAN, 8),
    "Fnet": (ConstraintType.FINISH_NO_EARLIER_THAN, 17),
    "Snlt": (ConstraintType.START_NO_LATER_THAN, 8),
    "Fnlt": (ConstraintType.FINISH_NO_LATER_THAN, 17),
    "Mso": (ConstraintType.MUST_START_ON, 8),
    "Mfo": (ConstraintType.MUST_FINISH_ON, 17),
}
DAYS = [
    DayOfWeek.MONDAY,
    DayOfWeek.TUESDAY,
    DayOfWeek.WEDNESDAY,
    DayOfWeek.THURSDAY,
    DayOfWeek.FRIDAY,
    DayOfWeek.SATURDAY,
    DayOfWeek.SUNDAY,
]


def ldt(iso, hour):
    d = datetime.date.fromisoformat(iso)
    return LocalDateTime.of(d.year, d.month, d.day, hour, 0)


def ld(iso):
    d = datetime.date.fromisoformat(iso)
    return LocalDate.of(d.year, d.month, d.day)


def days(n):
    return Duration.getInstance(n, TimeUnit.DAYS)


def make_calendar(project, spec, name):
    cal = project.addDefaultBaseCalendar()
    cal.setName(name)
    mask = spec["working_weekdays"]
    for i, day in enumerate(DAYS):
        working = bool(mask & (1 << i))
        cal.setWorkingDay(day, working)
        hours = cal.getCalendarHours(day)
        if hours is None:
            hours = cal.addCalendarHours(day)
        hours.clear()
        if working:
            hours.add(ProjectCalendarDays.DEFAULT_WORKING_MORNING)
            hours.add(ProjectCalendarDays.DEFAULT_WORKING_AFTERNOON)
    for e in spec["exceptions"]:
        cal.addCalendarException(ld(e["first"]), ld(e["last"]))
    return cal


def build(net):
    inp = net["input"]
    project = ProjectFile()
    default = make_calendar(project, inp["calendar"], "Project")
    project.setDefaultCalendar(default)
    cals = {cid: make_calendar(project, spec, cid) for cid, spec in inp["calendars"].items()}
    tasks = {}
    parents = {}
    for t in inp["tasks"]:
        parents[t["id"]] = t["parent"]
    # Parents first, so children can be added under them.
    order = []
    placed = set()

    def place(tid):
        if tid in placed:
            return
        p = parents[tid]
        if p is not None:
            place(p)
        placed.add(tid)
        order.append(tid)

    by_id = {t["id"]: t for t in inp["tasks"]}
    for t in inp["tasks"]:
        place(t["id"])
    for tid in order:
        t = by_id[tid]
        p = t["parent"]
        task = project.addTask() if p is None else tasks[p].addTask()
        task.setName(tid)
        d = 0 if t["is_milestone"] else t["duration"]
        task.setDuration(days(d))
        if t["actual_finish"] is not None:
            task.setActualStart(ldt(t["actual_start"], 8))
            task.setActualFinish(ldt(t["actual_finish"], 17))
            task.setActualDuration(days(d))
            task.setRemainingDuration(days(0))
            task.setPercentageComplete(jpype.JDouble(100.0))
        elif t["actual_start"] is not None:
            task.setActualStart(ldt(t["actual_start"], 8))
            task.setActualDuration(days(0))
            task.setRemainingDuration(days(d))
        else:
            task.setActualDuration(days(0))
            task.setRemainingDuration(days(d))
        task.setMilestone(d == 0)  # MS Project flags every zero-duration task
        if t["calendar"] is not None:
            task.setCalendar(cals[t["calendar"]])
        c = t["constraint"]
        ctype, hour = CONSTRAINT[c["type"]]
        task.setConstraintType(ctype)
        if hour is not None:
            date = c["date"]
            if NORMALIZE:
                # liveplan reads a constraint date on a non-working day as the next
                # working day (start constraints) or the previous one (finish
                # constraints); MPXJ keeps the raw date-time.
                cal = cals[t["calendar"]] if t["calendar"] is not None else default
                day = datetime.date.fromisoformat(date)
                step = datetime.timedelta(days=1 if hour == 8 else -1)
                while not cal.isWorkingDate(ld(day.isoformat())):
                    day += step
                date = day.isoformat()
            task.setConstraintDate(ldt(date, hour))
        if t["deadline"] is not None:
            task.setDeadline(ldt(t["deadline"], 17))
        tasks[tid] = task
    for link in inp["links"]:
        b = (
            RelationBuilder()
            .predecessorTask(tasks[link["predecessor"]])
            .type(LINK[link["type"]])
            .lag(days(link["lag"]))
        )
        tasks[link["successor"]].addPredecessor(b)
    return project, tasks, ldt(inp["start"], 8)


def slack_days(d):
    if d is None:
        return None
    # MPXJ reports slack as a Duration, possibly in hours or minutes.
    u = str(d.getUnits())
    v = float(d.getDuration())
    per_day = {"d": 1.0, "h": 8.0, "m": 480.0, "w": 0.2}.get(u)
    if per_day is None:
        return v
    return v / per_day


def date_of(x):
    return None if x is None else str(x.toLocalDate())


def compare(net, project, tasks):
    """Returns a list of mismatch strings for one network."""
    out = []
    expected = {t["id"]: t for t in net["expected"]["tasks"]}
    summaries = {t["parent"] for t in net["input"]["tasks"] if t["parent"]}
    for tid, task in tasks.items():
        e = expected[tid]
        got = {
            "early_start": date_of(task.getEarlyStart()),
            "early_finish": date_of(task.getEarlyFinish()),
            "late_start": date_of(task.getLateStart()),
            "late_finish": date_of(task.getLateFinish()),
            "total_float": slack_days(task.getTotalSlack()),
            "free_float": slack_days(task.getFreeSlack()),
            "is_critical": bool(task.getCritical()),
        }
        for field, value in got.items():
            if tid in summaries and field in ("free_float", "is_critical"):
                # MPXJ marks a summary critical when any subtask is, and derives its
                # free slack from its subtasks; liveplan uses the summary's own float.
                continue
            want = e[field]
            if field in ("total_float", "free_float"):
                if value is None or abs(value - want) > 1e-6:
                    out.append(f"{tid[-4:]} {field}: mpxj {value} liveplan {want}")
            elif value != want:
                out.append(f"{tid[-4:]} {field}: mpxj {value} liveplan {want}")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("networks")
    ap.add_argument("--report")
    ap.add_argument("--time", action="store_true", help="only time MPXJ on each network")
    ap.add_argument(
        "--normalize-constraint-dates",
        action="store_true",
        help="move constraint dates off non-working days the way liveplan reads them",
    )
    args = ap.parse_args()
    global NORMALIZE
    NORMALIZE = args.normalize_constraint_dates
    nets = json.load(open(args.networks))
    matched = 0
    lines = []
    field_counts = {}
    for i, net in enumerate(nets):
        project, tasks, start = build(net)
        t0 = time.perf_counter()
        MicrosoftScheduler().schedule(project, start)
        elapsed = time.perf_counter() - t0
        if args.time or len(tasks) >= 10000:
            print(f"network {i}: {len(tasks)} tasks scheduled by MPXJ in {elapsed * 1000:.1f} ms")
        if args.time:
            continue
        diffs = compare(net, project, tasks)
        if diffs:
            lines.append(f"network {i}: {len(diffs)} field(s) differ")
            lines.extend("  " + d for d in diffs)
            for d in diffs:
                f = d.split(":")[0].split(" ")[1]
                field_counts[f] = field_counts.get(f, 0) + 1
        else:
            matched += 1
    if args.time:
        return 0
    summary = f"MPXJ differential: {matched}/{len(nets)} networks match field by field"
    if field_counts:
        summary += "; differing fields: " + ", ".join(f"{k}={v}" for k, v in sorted(field_counts.items()))
    lines.append(summary)
    text = "\n".join(lines)
    if args.report:
        open(args.report, "w").write(text + "\n")
    print(text if len(text) < 20000 else text[-20000:])
    return 0 if matched == len(nets) else 1


if __name__ == "__main__":
    sys.exit(main())
