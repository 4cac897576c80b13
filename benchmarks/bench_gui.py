"""GUI responsiveness: event-loop stalls while indexing and answering, and start-up time.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_gui.py
    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_gui.py --pages 100   # quick
    .venv/bin/python benchmarks/bench_gui.py --only startup --runs 5
    xvfb-run -a .venv/bin/python benchmarks/bench_gui.py --only startup --platform xcb
    add --json for one JSON object instead of the tables

Stalls (issue 4: p99 under 50 ms, never over 200 ms): the real `MainWindow` on qasync's loop,
as `folio` runs it, with a temporary library, settings file and FOLIO_HOME. A precise QTimer
(`--interval`, default 5 ms) stamps `time.perf_counter()` on the GUI thread; a gap is the time
between two ticks beyond the interval, i.e. how long the loop could not run. Phases:

- startup: from `show()` until the model is loaded, the library listed and the embedder warm;
- idle: a few seconds of nothing, the timer's own noise floor;
- ingest: `LibraryPanel.ingest([pdf])` (what a drop and "Add files..." call) until the ingest
  has finished and the listing after it has landed. Default: the Octave manual (1,158 pages);
  `--pages N` ingests a PDF of its first N pages instead (made with PyMuPDF) for quick runs;
- folder (`--phases folder`): a dropped folder of `--folder-files` (1,000) small notes: the
  library tree while thousands of file events arrive;
- watch (`--phases watch`): a watched folder (File > Watched folders) into which a burst of
  `--folder-files` (1,000) notes is written at once by another thread, until every one is
  indexed: the folder watcher's events, batches and the tree's updates (issue 16);
- long-chat (`--phases long-chat`): an answer streamed into a chat of `--chat-turns` (50)
  earlier turns with lists, code and tables;
- answer: a question sent through the chat panel's box and `send()` with "Longest answer" set
  to `--max-tokens` (200) in the model panel, until the answer has finished.

A watchdog thread samples the GUI thread's Python stack (`sys._current_frames()`) whenever a
tick is more than 50 ms late; `--why` prints the most common stacks seen during late ticks.

Start-up (target under 2 s): `python -m app --library TMP` as a subprocess with
FOLIO_STARTUP_PROBE=1, which makes the app print "READY <seconds since process start>" on the
first idle tick after the window has been shown, painted and started, and quit. Reported from
both clocks: the child's (since its process was created) and the parent's (Popen to the READY
line). The first run is "cold-ish" (files may still be in the page cache from earlier runs).
The probe then closes the window while the model is still loading: "close() s" is how long
that call blocked the GUI thread (the window hides at once; the process exits, "exit s",
once the load it cannot interrupt has finished).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from itertools import pairwise
from pathlib import Path

from _common import ROOT, percentile

CORPUS = ROOT / "benchmarks" / ".corpus" / "octave.pdf"
QUESTION = "How do I compute the eigenvalues and eigenvectors of a matrix?"
LATE_MS = 50.0
SHARED_MODELS = Path(os.environ.get("FOLIO_TEST_MODELS",
                                    Path.home() / ".cache" / "folio-test-models"))


# -- ticks and the watchdog ----------------------------------------------------------------

class Ticker:
    """Stamps perf_counter on the GUI thread at a fixed interval; phases are index ranges."""

    def __init__(self, interval_ms: int):
        from PySide6.QtCore import Qt, QTimer

        self.interval = interval_ms / 1000
        self.stamps: list[float] = []
        self.phases: dict[str, tuple[int, int]] = {}
        self._open: dict[str, int] = {}
        self.imported: dict[str, list[str]] = {}  # top-level packages first imported per phase
        self._modules: dict[str, set[str]] = {}
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.gui_thread = threading.get_ident()

    def _tick(self) -> None:
        self.stamps.append(time.perf_counter())

    @property
    def last(self) -> float:
        return self.stamps[-1] if self.stamps else time.perf_counter()

    def start(self) -> None:
        self.stamps.append(time.perf_counter())
        self.timer.start()

    def begin(self, name: str) -> None:
        self._open[name] = len(self.stamps)
        self._modules[name] = set(sys.modules)

    def end(self, name: str) -> None:
        self.phases[name] = (self._open.pop(name), len(self.stamps))
        new = set(sys.modules) - self._modules.pop(name)
        self.imported[name] = sorted({m.partition(".")[0] for m in new})

    def gaps(self, name: str) -> list[tuple[float, float, float]]:
        """(gap_ms, start, end) for every tick interval inside the phase."""
        lo, hi = self.phases[name]
        s = self.stamps[max(lo - 1, 0):hi]
        return [(max(0.0, (b - a) - self.interval) * 1000, a, b) for a, b in pairwise(s)]


class Watchdog(threading.Thread):
    """While a tick is late, sample what the GUI thread (and the others) are doing."""

    def __init__(self, ticker: Ticker, late_ms: float = LATE_MS, every_s: float = 0.01):
        super().__init__(name="bench-watchdog", daemon=True)
        self.ticker, self.late, self.every = ticker, late_ms / 1000, every_s
        self.samples: list[tuple[float, str, str]] = []  # (time, gui stack, other threads)
        self.stop = threading.Event()

    def run(self) -> None:
        gui = self.ticker.gui_thread
        while not self.stop.wait(self.every):
            now = time.perf_counter()
            if now - self.ticker.last < self.late:
                continue
            frames = sys._current_frames()
            names = {t.ident: t.name for t in threading.enumerate()}
            stack = _stack(frames.get(gui))
            others = "; ".join(f"{names.get(tid, tid)}: {_stack(f, 1)}"
                               for tid, f in frames.items()
                               if tid not in (gui, threading.get_ident()))
            self.samples.append((now, stack, others))

    def why(self, gaps, top: int = 5) -> list[dict]:
        """The GUI-thread stacks most often seen inside the late gaps."""
        late = [(a, b) for g, a, b in gaps if g >= LATE_MS]
        seen: Counter = Counter()
        other: dict[str, Counter] = {}
        for t, stack, others in self.samples:
            if any(a <= t <= b for a, b in late):
                seen[stack] += 1
                other.setdefault(stack, Counter())[others] += 1
        return [{"samples": n, "gui_stack": s, "other_threads": other[s].most_common(1)[0][0]}
                for s, n in seen.most_common(top)]


def _stack(frame, depth: int = 6) -> str:
    if frame is None:
        return "(no python frame)"
    out = []
    for fs in traceback.extract_stack(frame)[-depth:]:
        out.append(f"{Path(fs.filename).name}:{fs.lineno} {fs.name}")
    return " > ".join(out)


def summarise(gaps, seconds: float) -> dict:
    ms = [g for g, _a, _b in gaps]
    return {
        "seconds": round(seconds, 1),
        "ticks": len(ms),
        "p50_ms": round(percentile(ms, 50), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "max_ms": round(max(ms, default=float("nan")), 1),
        "over_50ms": sum(g > 50 for g in ms),
        "over_200ms": sum(g > 200 for g in ms),
    }


# -- the stall benchmark -------------------------------------------------------------------

def first_pages(src: Path, n: int, folder: Path) -> Path:
    """A PDF of `src`'s first n pages, made in a child process so that PyMuPDF is not already
    imported here (its import is part of what the window's first ingest costs)."""
    out = folder / f"{src.stem}-first{n}.pdf"
    code = ("import sys, pymupdf; src, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]\n"
            "with pymupdf.open(src) as doc:\n"
            "    part = pymupdf.open(); part.insert_pdf(doc, from_page=0, "
            "to_page=min(n, doc.page_count) - 1); part.save(out)")
    subprocess.run([sys.executable, "-c", code, str(src), str(n), str(out)], check=True)
    return out


LONG_ANSWER = ("Use `plot (x, y)` to draw the data {i}, then `hold on` to keep it [1].\n\n"
               "- `xlabel` and `ylabel` name the axes\n- `legend` names the lines\n\n"
               "```\nx = linspace (0, {i}, 100);\nplot (x, sin (x));\n```\n\n"
               "| command | effect |\n|---|---|\n| hold on | keep |\n| hold off | replace |")


def many_files(folder: Path, n: int) -> Path:
    """A folder of `n` small Markdown notes in subfolders of 100."""
    for i in range(n):
        path = folder / f"part{i // 100:02}" / f"note{i:05}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# Note {i}\n\nNote {i} says that pump {i} needs oil every "
                        f"{i % 30 + 1} days.\n", "utf-8")
    return folder


def run_stalls(args, tmp: Path) -> dict:
    import asyncio

    import qasync
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    pdf = Path(args.pdf)
    if args.pages:
        pdf = first_pages(pdf, args.pages, tmp)
    app = QApplication.instance() or QApplication([sys.argv[0]])
    from app.ui.main_window import MainWindow

    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    ticker = Ticker(args.interval)
    dog = Watchdog(ticker)
    out: dict = {"pdf": str(pdf), "interval_ms": args.interval,
                 "platform": os.environ.get("QT_QPA_PLATFORM", "")}

    async def until(cond, timeout: float, what: str) -> None:
        end = time.perf_counter() + timeout
        while not cond():
            if time.perf_counter() > end:
                raise TimeoutError(f"timed out waiting for {what}")
            await asyncio.sleep(0.05)

    async def drive() -> None:
        if "folder" in args.phases:  # written first: not while the ticks of a phase count
            folder = many_files(tmp / "folder", args.folder_files)
        ticker.start()
        if not args.no_watchdog:
            dog.start()
        settings = QSettings(str(tmp / "folio.ini"), QSettings.Format.IniFormat)
        t0 = time.perf_counter()
        ticker.begin("startup")
        window = MainWindow(tmp / "library", settings=settings)
        window.show()
        window.start()
        failed: list[str] = []
        window.model_failed.connect(failed.append)
        await until(lambda: window.model_info is not None or failed, 300, "the model")
        if failed:
            raise RuntimeError(f"model failed: {failed[0]}")
        await until(lambda: window.library.opened and not window.workers.running(), 300,
                    "the library and embedder")
        ticker.end("startup")
        out["startup_loaded_s"] = round(time.perf_counter() - t0, 2)

        ticker.begin("idle")
        await asyncio.sleep(args.idle)
        ticker.end("idle")

        if "ingest" in args.phases:
            lib = window.library
            summaries: list = []
            lib.ingest_finished.connect(summaries.append)
            t0 = time.perf_counter()
            ticker.begin("ingest")
            lib.ingest([str(pdf)])  # what a drop or "Add files..." calls
            await until(lambda: summaries, 3600, "the ingest")
            await until(lambda: not lib._refreshing, 60, "the listing after the ingest")
            ticker.end("ingest")
            s = summaries[0]
            out["ingest"] = {"wall_s": round(time.perf_counter() - t0, 1), "files": s.files,
                             "pages": s.pages, "chunks": s.chunks, "failed": len(s.failed)}

        if "folder" in args.phases:  # many small files: the library tree's updates
            lib = window.library
            summaries = []
            lib.ingest_finished.connect(summaries.append)
            t0 = time.perf_counter()
            ticker.begin("folder")
            lib.ingest([str(folder)])  # a dropped folder
            await until(lambda: summaries, 3600, "the folder's ingest")
            await until(lambda: not lib._refreshing, 60, "the listing after the ingest")
            ticker.end("folder")
            s = summaries[-1]
            out["folder"] = {"wall_s": round(time.perf_counter() - t0, 1), "files": s.files,
                             "chunks": s.chunks, "failed": len(s.failed),
                             "rows": len(lib.docs)}

        if "watch" in args.phases:  # a burst of file events in a watched folder
            lib = window.library
            watched = tmp / "watched"
            watched.mkdir()
            window.watched.set_watched(watched, True)
            await until(lambda: getattr(window.watched.watcher, "_observer", None) is not None,
                        120, "the folder watcher")  # watching (its start runs in a thread)
            before = len(lib.docs)
            t0 = time.perf_counter()
            ticker.begin("watch")
            writer = threading.Thread(target=many_files, args=(watched, args.folder_files))
            writer.start()  # written off the GUI thread, as an editor or a sync tool would
            await until(lambda: len([d for d in lib.docs if d.status == "ready"])
                        >= before + args.folder_files, 3600, "the watched files")
            writer.join()
            await until(lambda: not lib._refreshing, 60, "the listing after the batches")
            ticker.end("watch")
            out["watch"] = {"wall_s": round(time.perf_counter() - t0, 1),
                            "files": args.folder_files, "rows": len(lib.docs)}

        if "long-chat" in args.phases:  # an answer streamed below many earlier turns
            chat = window.chat
            chat_id = chat.new_chat()
            store = window.folio.store
            for i in range(args.chat_turns):
                store.add_message(chat_id, "user", f"Question {i}: how do I plot data {i}?")
                store.add_message(chat_id, "assistant", LONG_ANSWER.format(i=i))
            chat.reload_messages()
            await asyncio.sleep(0.5)
            window.model.max_tokens.setValue(args.max_tokens)
            finals = []
            chat.answer_finished.connect(lambda ev: finals.append(ev))
            t0 = time.perf_counter()
            ticker.begin("long-chat")
            chat.input.setPlainText(args.question)
            chat.send()
            await until(lambda: finals, 600, "the answer in the long chat")
            ticker.end("long-chat")
            if finals[-1] is None:
                raise RuntimeError(f"the answer failed: {window.banner.text.text()}")
            stats = finals[-1].stats
            out["long_chat"] = {"turns": args.chat_turns, "wall_s": round(time.perf_counter() - t0, 1),
                                "completion_tokens": stats.get("completion_tokens")}

        if "answer" in args.phases:
            chat = window.chat
            chat.new_chat()
            window.model.max_tokens.setValue(args.max_tokens)  # stored with the chat
            finals: list = []
            chat.answer_finished.connect(lambda ev: finals.append(ev))
            tokens = {"events": 0, "first": None}

            def on_token(_text: str) -> None:
                tokens["events"] += 1
                if tokens["first"] is None:
                    tokens["first"] = time.perf_counter()

            chat.token_received.connect(on_token)
            t0 = time.perf_counter()
            ticker.begin("answer")
            chat.input.setPlainText(args.question)
            chat.send()  # what Enter and the Send button call
            await until(lambda: finals, 600, "the answer")
            ticker.end("answer")
            ev = finals[0]
            stats = ev.stats if ev is not None else {}
            out["answer"] = {
                "wall_s": round(time.perf_counter() - t0, 1),
                "ttft_s": round(tokens["first"] - t0, 2) if tokens["first"] else None,
                "completion_tokens": stats.get("completion_tokens"),
                "prompt_tokens": stats.get("prompt_tokens"),
                "token_events": tokens["events"],
                "finish_reason": stats.get("finish_reason"),
            }
        window.close()

    with loop:
        loop.run_until_complete(drive())
    dog.stop.set()
    ticker.timer.stop()

    phases = {}
    for name in ticker.phases:
        gaps = ticker.gaps(name)
        lo, hi = ticker.phases[name]
        seconds = ticker.stamps[hi - 1] - ticker.stamps[max(lo - 1, 0)] if hi > lo else 0.0
        phases[name] = summarise(gaps, seconds)
        if not args.no_watchdog:
            phases[name]["late_stacks"] = dog.why(gaps)
        worst = sorted(gaps, reverse=True)[:5]
        start = ticker.stamps[max(lo - 1, 0)]
        phases[name]["worst_ms"] = [round(g, 1) for g, _a, _b in worst]
        phases[name]["worst_at_s"] = [round(a - start, 2) for _g, a, _b in worst]
        phases[name]["imported"] = ticker.imported.get(name, [])
    out["phases"] = phases
    return out


# -- start-up ------------------------------------------------------------------------------

def run_startup(args, tmp: Path) -> dict:
    env = dict(os.environ)
    env.update({"FOLIO_STARTUP_PROBE": "1", "FOLIO_HOME": str(tmp / "home"),
                "FOLIO_QSETTINGS": str(tmp / "startup.ini"), "FOLIO_LOG_DIR": str(tmp / "logs")})
    if args.platform:
        env["QT_QPA_PLATFORM"] = args.platform
    if "FOLIO_MODELS" not in env and SHARED_MODELS.is_dir():
        env["FOLIO_MODELS"] = str(SHARED_MODELS)
    runs = []
    for i in range(args.runs):
        lib = tmp / f"startup-lib-{i}"
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "app", "--library", str(lib)], cwd=ROOT,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        child = parent = close_s = None
        hidden = False
        for line in proc.stdout:
            if line.startswith("READY "):
                parent = time.perf_counter() - t0
                child = float(line.split()[1])
            elif line.startswith("CLOSED "):
                close_s = float(line.split()[1])
                hidden = "hidden=True" in line
                break
        try:
            proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        exit_s = time.perf_counter() - t0
        if child is None:
            raise RuntimeError(f"no READY line (rc {proc.returncode}):\n{proc.stderr.read()}"
                               if proc.stderr else "no READY line")
        runs.append({"child_s": round(child, 3), "parent_s": round(parent, 3),
                     "close_s": close_s, "hidden": hidden,
                     "exit_s": round(exit_s, 2), "rc": proc.returncode})
    warm = runs[1:] or runs
    return {
        "platform": env.get("QT_QPA_PLATFORM", "") or "default",
        "runs": runs,
        "first_child_s": runs[0]["child_s"],
        "first_parent_s": runs[0]["parent_s"],
        "median_child_s": round(statistics.median(r["child_s"] for r in runs), 3),
        "median_parent_s": round(statistics.median(r["parent_s"] for r in runs), 3),
        "median_warm_child_s": round(statistics.median(r["child_s"] for r in warm), 3),
        "median_warm_parent_s": round(statistics.median(r["parent_s"] for r in warm), 3),
        "max_close_s": max((r["close_s"] or 0) for r in runs),
    }


# -- output --------------------------------------------------------------------------------

def print_tables(result: dict, why: bool) -> None:
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
          f"({os.cpu_count()} cores)")
    st = result.get("stalls")
    if st:
        print(f"\nGUI stalls: QT_QPA_PLATFORM={st['platform'] or '(default)'}, "
              f"{st['interval_ms']} ms tick, gaps beyond the interval; {st['pdf']}")
        print(f"  model + library + embedder ready {st['startup_loaded_s']} s after show()")
        if "ingest" in st:
            i = st["ingest"]
            print(f"  ingest: {i['files']} file, {i['pages']} pages, {i['chunks']} chunks, "
                  f"{i['failed']} failed, {i['wall_s']} s")
        if "folder" in st:
            f = st["folder"]
            print(f"  folder: {f['files']} files, {f['chunks']} chunks, {f['failed']} failed, "
                  f"{f['rows']} rows, {f['wall_s']} s")
        if "watch" in st:
            w = st["watch"]
            print(f"  watch: {w['files']} files written at once into a watched folder, "
                  f"{w['rows']} rows, {w['wall_s']} s until all were indexed")
        if "long_chat" in st:
            c = st["long_chat"]
            print(f"  long chat: {c['turns']} earlier turns, {c['completion_tokens']} tokens, "
                  f"{c['wall_s']} s")
        if "answer" in st:
            a = st["answer"]
            print(f"  answer: {a['completion_tokens']} tokens ({a['finish_reason']}), prompt "
                  f"{a['prompt_tokens']}, first token {a['ttft_s']} s, {a['wall_s']} s, "
                  f"{a['token_events']} token events")
        head = ("phase", "seconds", "ticks", "p50 ms", "p99 ms", "max ms", ">50 ms", ">200 ms")
        print("\n  " + " | ".join(f"{h:>8}" for h in head))
        for name, p in st["phases"].items():
            row = (name, p["seconds"], p["ticks"], p["p50_ms"], p["p99_ms"], p["max_ms"],
                   p["over_50ms"], p["over_200ms"])
            print("  " + " | ".join(f"{v:>8}" for v in row))
        for name, p in st["phases"].items():
            at = ", ".join(f"{g} ms at {t} s" for g, t in zip(p["worst_ms"], p["worst_at_s"]))
            print(f"  {name} worst gaps: {at}")
        if why:
            for name, p in st["phases"].items():
                print(f"  {name} first imported: {' '.join(p['imported']) or '-'}")
        if why:
            for name, p in st["phases"].items():
                for s in p.get("late_stacks", []):
                    print(f"\n  [{name}] {s['samples']} samples in late ticks:\n"
                          f"    GUI: {s['gui_stack']}\n    others: {s['other_threads']}")
    su = result.get("startup")
    if su:
        print(f"\nStart-up to a shown, painted, idle window (QT_QPA_PLATFORM={su['platform']})")
        print("  run | child clock s | parent clock s | close() s | hidden | exit s")
        for n, r in enumerate(su["runs"], 1):
            print(f"  {n:>3} | {r['child_s']:>13} | {r['parent_s']:>14} | "
                  f"{r['close_s']!s:>9} | {r['hidden']!s:>6} | {r['exit_s']:>6}")
        print(f"  first (cold-ish): {su['first_child_s']} s child, {su['first_parent_s']} s "
              f"parent; median of {len(su['runs'])}: {su['median_child_s']} / "
              f"{su['median_parent_s']} s; warm median: {su['median_warm_child_s']} / "
              f"{su['median_warm_parent_s']} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["stalls", "startup"], help="run one of the two")
    ap.add_argument("--phases", nargs="+", default=["ingest", "answer"],
                    choices=["ingest", "answer", "folder", "watch", "long-chat"],
                    help="folder: a dropped folder of --folder-files small files; long-chat: "
                    "an answer streamed into a chat of --chat-turns earlier turns")
    ap.add_argument("--folder-files", type=int, default=1000)
    ap.add_argument("--chat-turns", type=int, default=50)
    ap.add_argument("--pdf", default=str(CORPUS), help="the PDF to ingest (the Octave manual)")
    ap.add_argument("--pages", type=int, help="ingest only the PDF's first N pages")
    ap.add_argument("--interval", type=int, default=5, help="tick interval in ms (default 5)")
    ap.add_argument("--idle", type=float, default=3.0, help="seconds of the idle phase")
    ap.add_argument("--question", default=QUESTION)
    ap.add_argument("--max-tokens", type=int, default=200)
    ap.add_argument("--no-watchdog", action="store_true")
    ap.add_argument("--why", action="store_true", help="print the GUI stacks in late ticks")
    ap.add_argument("--runs", type=int, default=5, help="start-up runs (default 5)")
    ap.add_argument("--platform", help="QT_QPA_PLATFORM for the start-up runs "
                    "(default: inherited; xcb needs a display, e.g. xvfb-run -a)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    result: dict = {}
    with tempfile.TemporaryDirectory(prefix="folio-bench-gui-") as t:
        tmp = Path(t)
        if args.only in (None, "startup"):
            result["startup"] = run_startup(args, tmp)
        if args.only in (None, "stalls"):
            os.environ["FOLIO_HOME"] = str(tmp / "home")
            os.environ["FOLIO_LOG_DIR"] = str(tmp / "logs")
            if "FOLIO_MODELS" not in os.environ and SHARED_MODELS.is_dir():
                os.environ["FOLIO_MODELS"] = str(SHARED_MODELS)
            result["stalls"] = run_stalls(args, tmp)
    result["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        print(json.dumps(result))
    else:
        print_tables(result, args.why)


if __name__ == "__main__":
    main()
