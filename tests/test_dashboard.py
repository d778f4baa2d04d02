"""The dashboard (/ui): its JSON routes, and the page end to end in headless Chromium (Selenium).

A real uvicorn server on 127.0.0.1 serves the memq app; memories, an update and feedback are
seeded through the REST API with an API key, then the browser pastes the key, searches, opens a
record and the test checks what renders (versions, the q plot's points, the retrieval log, a
benchmark report). A second server, configured (by a MemoryConfig file, as ``memq serve`` takes
it) to fit its learner every few feedbacks and promote it at once, gives the Learning panel a
promotion estimate and a serving learner. Screenshots land in ``test-artifacts/dashboard*.png``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from live_server import live_server
from memq.server.app import create_app
from memq.server.settings import ServerSettings

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
REPORT_HTML = "<!doctype html><html><body><h1 id='report-title'>TTL benchmark</h1></body></html>"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A served app with two tenants' keys, seeded data and a reports directory."""
    tmp = tmp_path_factory.mktemp("dashboard")
    reports = tmp / "reports"
    reports.mkdir()
    (reports / "ttl-report.html").write_text(REPORT_HTML)
    (reports / "ttl.json").write_text('{"benchmark": "ttl", "results": []}')
    (reports / "notes.txt").write_text("not a report")  # unknown suffix: never listed or served
    (tmp / "secret.json").write_text('{"secret": true}')  # outside the directory
    mp = pytest.MonkeyPatch()
    mp.setenv("MEMQ_SERVER_REPORTS_DIR", str(reports))
    app = create_app(ServerSettings(db=str(tmp / "ui.db"), embedder="hashing", rate_per_s=0))
    _, key = app.state.keys.create("acme", ["read", "write"], name="ui")
    _, other = app.state.keys.create("globex", ["read", "write"], name="other")
    with live_server(app) as base:
        api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"})
        made = [
            api.post("/v1/memories", json={"text": t}).json()
            for t in ("Alice moved to Berlin in 2021", "Bob is allergic to peanuts", "Carol adopted a dog")
        ]
        alice = made[0]["id"]
        api.patch(f"/v1/memories/{alice}", json={"text": "Alice moved to Munich in 2024", "reason": "moved"})
        rewards = [1.0, 0.0, 1.0]
        retrievals = []
        for reward in rewards:
            got = api.post("/v1/search", json={"query": "Alice moved to Munich", "k": 2}).json()
            assert got["hits"][0]["record"]["id"] == alice
            fb = api.post(f"/v1/retrievals/{got['id']}/feedback", json={"reward": reward})
            assert fb.status_code == 200, fb.text
            retrievals.append(got["id"])
        yield {"base": base, "key": key, "other": other, "alice": alice, "api": api, "retrievals": retrievals}
        api.close()
    app.state.memory.close()
    mp.undo()


def test_utility_series_replays_the_feedback(site: dict[str, Any]) -> None:
    api, alice = site["api"], site["alice"]
    series = api.get(f"/ui/api/memories/{alice}/utility").json()
    record = api.get(f"/v1/memories/{alice}").json()
    assert [p["retrieval_id"] for p in series["points"]] == site["retrievals"]
    assert [p["reward"] for p in series["points"]] == [1.0, 0.0, 1.0]
    qs = [p["q"] for p in series["points"]]
    assert qs[1] < qs[0] and qs[2] > qs[1]  # down after reward 0, up again after reward 1
    assert series["matches_current"] is True
    assert qs[-1] == pytest.approx(record["utility"]["q"])
    assert series["points"][-1]["n_shown"] == record["utility"]["n_shown"] == 3


def test_retrieval_log_is_newest_first_with_feedback(site: dict[str, Any]) -> None:
    log = site["api"].get("/ui/api/retrievals", params={"feedback_only": "true"}).json()
    assert [r["id"] for r in log["rows"]] == site["retrievals"][::-1]
    assert [r["feedback"]["reward"] for r in log["rows"]] == [1.0, 0.0, 1.0]
    assert all(r["shown"] and r["shown"][0]["id"] == site["alice"] for r in log["rows"])


def test_dashboard_json_is_tenant_scoped_and_needs_a_key(site: dict[str, Any]) -> None:
    base, alice = site["base"], site["alice"]
    other = {"Authorization": f"Bearer {site['other']}"}
    assert httpx.get(base + "/ui/api/retrievals", headers=other).json()["rows"] == []
    r = httpx.get(f"{base}/ui/api/memories/{alice}/utility", headers=other)
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    for path in (
        "/ui/api/retrievals",
        f"/ui/api/memories/{alice}/utility",
        "/ui/api/reports",
        "/ui/api/learning",
    ):
        r = httpx.get(base + path)
        assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
    assert httpx.get(base + "/ui/").status_code == 200  # the page itself is static and public


def test_reports_listing_and_serving_stay_in_the_directory(site: dict[str, Any]) -> None:
    api = site["api"]
    names = {r["name"]: r["kind"] for r in api.get("/ui/api/reports").json()}
    assert names == {"ttl-report.html": "html", "ttl.json": "json"}
    r = api.get("/ui/api/reports/ttl-report.html")
    assert (
        r.status_code == 200 and r.text == REPORT_HTML and r.headers["content-type"].startswith("text/html")
    )
    for bad in ("notes.txt", "..%2Fsecret.json", "%2E%2E%2Fsecret.json", "missing.json"):
        assert api.get("/ui/api/reports/" + bad).status_code == 404, bad


# -- the Learning panel's JSON ----------------------------------------------------------------------
LEARNING_REWARDS = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]


@contextmanager
def _serve(tmp: Path, name: str, config: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """A served app on ``tmp/name.db`` opened with ``config`` (a MemoryConfig file, as `memq serve
    --config` takes it); yields (base URL, an acme read-write key). Shutdown closes its Memory."""
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(config))
    settings = ServerSettings(db=str(tmp / f"{name}.db"), embedder="hashing", rate_per_s=0, config=str(path))
    app = create_app(settings)
    _, key = app.state.keys.create("acme", ["read", "write"], name="ui")
    with live_server(app) as base:
        yield base, key


@pytest.fixture(scope="module")
def learning_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A tenant whose learner (memq) was refit and tested during its feedback, and serves (always)."""
    config = {
        "learning": {"learner": "memq", "promotion": "always", "update_every": 4, "min_searches": 5},
        "learner_params": {"memq": {"fit_every": 4, "min_rows": 1}},
    }
    with _serve(tmp_path_factory.mktemp("learning"), "learning", config) as (base, key):
        api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"})
        for i in range(12):
            assert (
                api.post("/v1/memories", json={"text": f"note {i}: the blue door opens"}).status_code == 201
            )
        for reward in LEARNING_REWARDS:
            got = api.post("/v1/search", json={"query": "blue door", "k": 3}).json()
            used = [got["hits"][0]["record"]["id"]]
            fb = api.post(f"/v1/retrievals/{got['id']}/feedback", json={"reward": reward, "used": used})
            assert fb.status_code == 200, fb.text
        yield {"base": base, "key": key, "api": api}
        api.close()


def _rolling(rewards: list[float], window: int) -> list[float]:
    return [sum(rewards[max(0, n - window) : n]) / min(n, window) for n in range(1, len(rewards) + 1)]


def test_learning_on_a_fresh_tenant(site: dict[str, Any]) -> None:
    other = {"Authorization": f"Bearer {site['other']}"}  # globex: no search, no feedback
    view = httpx.get(site["base"] + "/ui/api/learning", headers=other).json()
    assert view["default"] == "memq" and view["promotion"] == "guarded"
    assert set(view["learners"]) == {"similarity", "memrl", "memento_q", "memq"}
    st = view["status"]
    assert st["learner"] == "memq" and st["serving"] is False and st["trained"] is False
    assert st["feedbacks"] == 0 and st["estimate"] is None and st["curve"] == []


def test_learning_counts_the_tenants_feedback(site: dict[str, Any]) -> None:
    api = site["api"]
    st = api.get("/ui/api/learning").json()["status"]
    assert st["learner"] == "memq" and st["feedbacks"] == 3 and st["serving"] is False  # guarded, 3 < 100
    assert [n for n, _ in st["curve"]] == [1, 2, 3]
    assert [v for _, v in st["curve"]] == pytest.approx(_rolling([1.0, 0.0, 1.0], 100))
    short = api.get("/ui/api/learning", params={"window": 2}).json()["status"]["curve"]
    assert [v for _, v in short] == pytest.approx(_rolling([1.0, 0.0, 1.0], 2))
    # a learner that none of these searches trained
    memrl = api.get("/ui/api/learning", params={"learner": "memrl"}).json()["status"]
    assert memrl["learner"] == "memrl" and memrl["feedbacks"] == 0 and memrl["curve"] == []


def test_learning_rejects_an_unknown_learner(site: dict[str, Any]) -> None:
    api = site["api"]
    r = api.get("/ui/api/learning", params={"learner": "nope"})
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "invalid_input" and "memrl" in r.json()["detail"]
    r = api.get("/ui/api/learning", params={"window": 0})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    responses = api.get("/openapi.json").json()["paths"]["/ui/api/learning"]["get"]["responses"]
    assert {"200", "400", "401", "422"} <= set(responses)


def test_learning_with_an_estimate_and_a_serving_learner(learning_site: dict[str, Any]) -> None:
    api = learning_site["api"]
    view = api.get("/ui/api/learning").json()
    assert view["promotion"] == "always" and view["min_searches"] == 5
    st = view["status"]
    assert st["serving"] is True and st["trained"] is True and st["state_version"] >= 1
    assert st["feedbacks"] == len(LEARNING_REWARDS)
    assert [v for _, v in st["curve"]] == pytest.approx(_rolling(LEARNING_REWARDS, 100))
    est = st["estimate"]
    assert est is not None and 0 < est["searches"] <= len(LEARNING_REWARDS)
    assert est["lower"] <= est["difference"] <= est["upper"]
    assert est["difference"] == pytest.approx(est["shadow"] - est["serving"])
    # similarity never serves, whatever the promotion mode
    sim = api.get("/ui/api/learning", params={"learner": "similarity"}).json()["status"]
    assert sim["serving"] is False and sim["feedbacks"] == 0


def test_learning_without_a_configured_learner(tmp_path: Path) -> None:
    with _serve(tmp_path, "none", {"learning": {"learner": None}}) as (base, key):
        auth = {"Authorization": f"Bearer {key}"}
        view = httpx.get(base + "/ui/api/learning", headers=auth).json()
        assert view["default"] is None and view["status"] is None  # the recipe ranks every search
        named = httpx.get(base + "/ui/api/learning", params={"learner": "memrl"}, headers=auth).json()
        assert named["status"]["learner"] == "memrl"


# -- the browser -----------------------------------------------------------------------------------
def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    found = _chromium()
    if found is None:
        pytest.skip("chromium and chromedriver are not installed (scripts/apt-deps.sh installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = found[0]
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--window-size=1400,1000",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=found[1]), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def test_dashboard_in_headless_chromium(site: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 20)

    def rows(css: str) -> list[Any]:
        return browser.find_elements(By.CSS_SELECTOR, css)

    browser.get(site["base"] + "/ui/")
    wait.until(ec.text_to_be_present_in_element((By.ID, "whoami"), "not signed in"))
    browser.find_element(By.ID, "api-key").send_keys(site["key"])
    browser.find_element(By.ID, "save-key").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "whoami"), "tenant acme"))
    wait.until(lambda _: len(rows("#records tbody tr")) == 3)  # browse: the tenant's records

    browser.find_element(By.ID, "search-input").send_keys("Alice moved to Munich")
    browser.find_element(By.ID, "search-btn").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "list-caption"), "hit(s)"))
    first = rows("#records tbody tr")[0]
    assert first.get_attribute("data-id") == site["alice"]
    assert "Munich" in first.text
    first.click()

    wait.until(lambda _: len(rows("#versions tbody tr")) == 2)
    versions = [r.text for r in rows("#versions tbody tr")]
    assert "Berlin" in versions[0] and "add" in versions[0]
    assert "Munich" in versions[1] and "update" in versions[1] and "moved" in versions[1]
    points = wait.until(lambda _: rows("#q-plot svg circle"))
    series = site["api"].get(f"/ui/api/memories/{site['alice']}/utility").json()
    assert [float(p.get_attribute("data-q")) for p in points] == pytest.approx(
        [p["q"] for p in series["points"]]
    )
    assert browser.find_element(By.CSS_SELECTOR, "#q-plot svg path.line").get_attribute("d").startswith("M")
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))

    browser.find_element(By.ID, "tab-retrievals").click()
    wait.until(lambda _: len(rows("#retrievals tbody tr")) >= 4)  # 3 seeded searches + the browser's
    browser.find_element(By.ID, "feedback-only").click()
    wait.until(lambda _: len(rows("#retrievals tbody tr")) == 3)
    assert [r.get_attribute("data-id") for r in rows("#retrievals tbody tr")] == site["retrievals"][::-1]
    assert rows("#retrievals tbody tr")[0].find_element(By.CSS_SELECTOR, ".pill").text == "1"
    browser.save_screenshot(str(ARTIFACTS / "dashboard-log.png"))

    browser.find_element(By.ID, "tab-reports").click()
    wait.until(lambda _: len(rows("#reports tbody tr")) == 2)
    browser.find_element(By.CSS_SELECTOR, "#reports tr[data-name='ttl-report.html']").click()
    frame = wait.until(lambda _: browser.find_element(By.CSS_SELECTOR, "#report-view iframe"))
    browser.switch_to.frame(frame)
    assert wait.until(lambda _: browser.find_element(By.ID, "report-title")).text == "TTL benchmark"
    browser.switch_to.default_content()
    browser.save_screenshot(str(ARTIFACTS / "dashboard-reports.png"))
    assert not browser.find_element(By.ID, "error").is_displayed()


def test_learning_panel_in_headless_chromium(learning_site: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 20)
    api = learning_site["api"]
    browser.get(learning_site["base"] + "/ui/")
    browser.find_element(By.ID, "api-key").send_keys(learning_site["key"])
    browser.find_element(By.ID, "save-key").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "whoami"), "tenant acme"))
    browser.find_element(By.ID, "tab-learning").click()

    serving = browser.find_element(By.ID, "serving")
    wait.until(lambda _: serving.get_attribute("data-serving") == "learner")
    assert serving.get_attribute("data-learner") == "memq" and "memq ranks" in serving.text
    st = api.get("/ui/api/learning").json()["status"]

    def cell(dl: str, key: str) -> str:
        return str(browser.find_element(By.CSS_SELECTOR, f"#{dl} dd[data-key='{key}']").text)

    assert cell("learner-fields", "feedbacks") == str(st["feedbacks"])
    assert cell("estimate-fields", "searches") == str(st["estimate"]["searches"])
    assert cell("estimate-fields", "serving") == f"{st['estimate']['serving']:.3f}"
    points = browser.find_elements(By.CSS_SELECTOR, "#curve-plot svg circle")
    assert [int(p.get_attribute("data-searches")) for p in points] == [n for n, _ in st["curve"]]
    assert [float(p.get_attribute("data-reward")) for p in points] == pytest.approx(
        [v for _, v in st["curve"]]
    )
    assert (
        browser.find_element(By.CSS_SELECTOR, "#curve-plot svg path.line").get_attribute("d").startswith("M")
    )
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "dashboard-learning.png"))

    Select(browser.find_element(By.ID, "learner-select")).select_by_value("similarity")
    wait.until(lambda _: serving.get_attribute("data-learner") == "similarity")
    assert serving.get_attribute("data-serving") == "recipe" and "recipe" in serving.text
    assert browser.find_elements(By.CSS_SELECTOR, "#curve-plot svg circle") == []
    assert "No logged feedback" in browser.find_element(By.ID, "curve-note").text
    assert not browser.find_element(By.ID, "error").is_displayed()


# -- q over time, rebuilt from the log (no server) ---------------------------------------------------
def _series(mem: Any, record_id: str) -> Any:
    from memq.learn import make_learner
    from memq.server.dashboard.router import _logs
    from memq.server.dashboard.utility import q_series

    record = mem.get(record_id, include_deleted=True)
    return q_series(record, _logs(mem, "acme", with_feedback=True), make_learner)


def test_q_series_follows_credit_and_policy(tmp_path: Path) -> None:
    from memq import Memory
    from memq.embed import HashingEmbedder

    with Memory(tmp_path / "q.db", embedder=HashingEmbedder(), scope="acme") as mem:
        a, b = mem.add(["the blue door is locked", "the blue door has a key under the mat"])
        first = mem.search("blue door", k=2)
        mem.feedback(first.id, 1.0, used=[b.id])  # credit "used": only b is credited
        second = mem.search("blue door key", k=2, policy="memq")
        mem.feedback(second.id, 0.0)
        sa, sb = _series(mem, a.id), _series(mem, b.id)
        assert [p.credit for p in sa.points] == [None, 0.0]
        assert sa.points[0].q is None  # shown without credit: q not learned yet
        assert [p.credit for p in sb.points] == [1.0, 0.0]
        # whose per-record rule updated q: the learner each search trained (memq by default)
        assert [p.policy for p in sb.points] == [first.learner, "memq"] == ["memq", "memq"]
        for s, rid in ((sa, a.id), (sb, b.id)):
            stored = mem.get(rid).utility
            assert s.matches_current and s.points[-1].q == pytest.approx(stored.q)
            assert s.points[-1].n_shown == stored.n_shown == 2


def test_q_series_flags_what_the_log_cannot_explain(tmp_path: Path) -> None:
    from memq import Memory
    from memq.embed import HashingEmbedder

    with Memory(tmp_path / "acc.db", embedder=HashingEmbedder(), scope="acme") as mem:
        rec = mem.add("the red car is fast")
        got = mem.search("red car", k=1)
        mem.feedback(got.id, 1.0)
        mem.feedback(got.id, 1.0, accumulate=True)  # the log keeps one entry with the sum
        series = _series(mem, rec.id)
        assert len(series.points) == 1 and series.points[0].count == 2
        assert series.matches_current is False
        assert mem.get(rec.id).utility.n_shown == 2
