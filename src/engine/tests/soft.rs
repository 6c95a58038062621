//! The Salt soft step: a saved job tried before the power ladder, at most once per incident,
//! never delaying the ladder beyond `salt_timeout`, persisted across a crash.

use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::probe::Decision;
use crate::provider::PowerAction::{Start, Stop};
use crate::salt::{JobStatus, SaltError, SoftCure};
use crate::testlog::Logs;

const PROBE: Duration = Duration::from_secs(30);
const JOB: &str = "5c5cc410-4f9f-11e6-88bc-080027a7289c";
const TARGET: &str = "89db0f82-4f9f-11e6-88bc-080027a7289c";

/// What a fake job does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    /// Succeeds and makes WEB's guest answer again.
    Cures,
    /// Succeeds, cures nothing.
    Useless,
    /// Completes with a failure.
    Fails,
    /// Pending for ever.
    Hangs,
}

struct FakeRun {
    jid: String,
    started: Instant,
    effect: Effect,
    done: bool,
}

#[derive(Default)]
struct SoftInner {
    /// `cmd.route_cmd` calls (also those cut off before the answer).
    asked: Vec<(String, String)>,
    runs: Vec<FakeRun>,
    statuses: usize,
}

/// A Salt server in memory: jobs take `duration`, then do `effect`.
struct FakeSoft {
    cloud: Arc<FakeCloud>,
    effect: Mutex<Effect>,
    duration: Duration,
    /// `cmd.route_cmd` takes this long to answer.
    answer_delay: Mutex<Duration>,
    inner: Mutex<SoftInner>,
}

impl FakeSoft {
    fn new(cloud: &Arc<FakeCloud>, effect: Effect, duration: Duration) -> Arc<FakeSoft> {
        Arc::new(FakeSoft {
            cloud: cloud.clone(),
            effect: Mutex::new(effect),
            duration,
            answer_delay: Mutex::new(Duration::ZERO),
            inner: Mutex::new(SoftInner::default()),
        })
    }

    fn asked(&self) -> usize {
        self.inner.lock().unwrap().asked.len()
    }
}

#[async_trait]
impl SoftCure for FakeSoft {
    async fn run_job(&self, job: &str, target: &str) -> Result<String, SaltError> {
        let n = {
            let mut inner = self.inner.lock().unwrap();
            inner.asked.push((job.to_owned(), target.to_owned()));
            inner.asked.len()
        };
        let delay = *self.answer_delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        let jid = format!("2026120315301200000{n}");
        self.inner.lock().unwrap().runs.push(FakeRun {
            jid: jid.clone(),
            started: Instant::now(),
            effect: *self.effect.lock().unwrap(),
            done: false,
        });
        Ok(jid)
    }

    async fn job_status(&self, jid: &str) -> Result<JobStatus, SaltError> {
        let mut inner = self.inner.lock().unwrap();
        inner.statuses += 1;
        let Some(run) = inner.runs.iter_mut().find(|r| r.jid == jid) else {
            return Err(SaltError::Rpc {
                op: "cmd.get_cmd_status",
                message: format!("the server does not know job run {jid}"),
            });
        };
        if run.effect == Effect::Hangs || run.started.elapsed() < self.duration {
            return Ok(JobStatus::Pending);
        }
        if run.effect == Effect::Cures && !run.done {
            self.cloud.inst(WEB, |i| i.responsive = true);
        }
        run.done = true;
        Ok(match run.effect {
            Effect::Fails => JobStatus::Failed("1 of 1 minions failed".into()),
            _ => JobStatus::Succeeded,
        })
    }
}

/// The config of [`World::with`] with a `[salt]` table and WEB's probe running the job.
fn salt_config(w: &World, salt_timeout: &str) -> Arc<Config> {
    let text = format!(
        "[daemon]\ninterval = \"60s\"\nreconcile = \"15m\"\nstate_dir = \"{}\"\n\
         [indigo]\napi_key = \"k\"\napi_secret = \"s\"\n\
         [[firewall]]\ntemplate = {FW}\ninstances = [{WEB}, {DB}, {APP}, {MAIL}]\n\
         [salt]\nserver = \"https://salt.example.net\"\ncsp_url = \"https://console.example.net\"\n\
         api_token = \"t\"\n\
         {}salt_job = \"{JOB}\"\nsalt_target = \"{TARGET}\"\nsalt_timeout = \"{salt_timeout}\"\n",
        w.dir.path().display(),
        probe_toml(WEB)
    );
    Arc::new(Config::parse(&text, &w.dir.path().join("dynwall.toml"), &HashMap::new()).unwrap())
}

/// A synced world probing WEB with a soft step, one healthy round behind it.
async fn world(soft: Effect, job_takes: Duration, salt_timeout: &str) -> (World, Arc<FakeSoft>) {
    let mut w = World::new(&[WEB]).await;
    w.config = salt_config(&w, salt_timeout);
    w.restart();
    let fake = FakeSoft::new(&w.cloud, soft, job_takes);
    w.eng_mut().set_soft_cure(Some(fake.clone()));
    w.cycle().await;
    let r = w.round().await;
    assert_eq!(r.instances[0].decision, Decision::Healthy);
    (w, fake)
}

/// Rounds PROBE apart until WEB's failure count is one short of acting.
async fn almost_down(w: &mut World) {
    w.cloud.inst(WEB, |i| i.responsive = false);
    w.rounds(2, PROBE).await;
    assert_eq!(w.record(WEB).consecutive_failures, 2);
}

#[tokio::test(start_paused = true)]
async fn a_job_that_cures_the_instance_ends_the_incident_without_a_power_request() {
    let (mut w, fake) = world(Effect::Cures, Duration::from_secs(5), "90s").await;
    almost_down(&mut w).await;
    let r = w.rounds(1, PROBE).await.remove(0);
    assert_eq!(r.instances[0].decision, Decision::Healthy, "{r:?}");
    assert_eq!(
        fake.inner.lock().unwrap().asked,
        [(JOB.into(), TARGET.into())]
    );
    assert!(w.cloud.actions(WEB).is_empty(), "no power request");
    let rec = w.record(WEB);
    assert_eq!(rec.consecutive_failures, 0);
    assert!(!rec.soft_tried && rec.soft.is_none() && !rec.incident_acted);
    assert!(
        rec.actions.is_empty(),
        "a soft step costs no remediation budget"
    );
    let outcome = rec.last_soft.unwrap();
    assert!(outcome.cured);
    assert_eq!(outcome.jid.as_deref(), Some("20261203153012000001"));
    // On disk, for `status`.
    let disk = w.on_disk();
    assert_eq!(
        disk["clouds"]["indigo"]["instances"][WEB]["last_soft"]["cured"],
        true
    );
    w.rounds(5, PROBE).await;
    assert!(w.cloud.actions(WEB).is_empty());
    assert_eq!(fake.asked(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_job_hands_over_to_the_ladder_in_the_same_round() {
    let (mut w, fake) = world(Effect::Fails, Duration::from_secs(5), "90s").await;
    almost_down(&mut w).await;
    w.rounds(1, PROBE).await;
    assert_eq!(fake.asked(), 1);
    assert_eq!(w.cloud.actions(WEB), [Stop], "the stop follows at once");
    let rec = w.record(WEB);
    assert!(rec.remediation.is_some());
    assert!(!rec.last_soft.as_ref().unwrap().cured);
    assert!(rec.last_soft.unwrap().detail.contains("minions failed"));
    w.rounds(3, POLL).await;
    assert_eq!(w.cloud.actions(WEB), [Stop, Start]);
    assert_eq!(fake.asked(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_job_that_succeeds_without_curing_is_followed_by_the_ladder() {
    let (mut w, fake) = world(Effect::Useless, Duration::from_secs(5), "90s").await;
    almost_down(&mut w).await;
    w.rounds(1, PROBE).await;
    assert_eq!(fake.asked(), 1);
    assert_eq!(w.cloud.actions(WEB), [Stop]);
    let detail = w.record(WEB).last_soft.unwrap().detail;
    assert!(detail.contains("probe still fails"), "{detail}");
}

#[tokio::test(start_paused = true)]
async fn a_job_that_hangs_delays_the_stop_by_salt_timeout_and_no_more() {
    let (mut w, fake) = world(Effect::Hangs, Duration::from_secs(5), "20s").await;
    almost_down(&mut w).await;
    tokio::time::advance(PROBE).await;
    let t = Instant::now();
    w.round().await;
    let took = t.elapsed();
    assert_eq!(w.cloud.actions(WEB), [Stop]);
    assert!(
        took >= Duration::from_secs(20) && took <= Duration::from_secs(21),
        "the round waited {took:?} for the job"
    );
    assert!(w
        .record(WEB)
        .last_soft
        .unwrap()
        .detail
        .contains("salt_timeout"));
    assert_eq!(fake.asked(), 1);
    // The round deadline of the daemon leaves room for it.
    assert!(w.eng().round_deadline() >= Duration::from_secs(25));
}

#[tokio::test(start_paused = true)]
async fn an_error_from_the_salt_server_hands_over_to_the_ladder() {
    struct Broken;
    #[async_trait]
    impl SoftCure for Broken {
        async fn run_job(&self, _: &str, _: &str) -> Result<String, SaltError> {
            Err(SaltError::XsrfRefused {
                op: "cmd.route_cmd",
            })
        }
        async fn job_status(&self, _: &str) -> Result<JobStatus, SaltError> {
            unreachable!("no job ran")
        }
    }
    let (mut w, _) = world(Effect::Cures, Duration::from_secs(5), "90s").await;
    w.eng_mut().set_soft_cure(Some(Arc::new(Broken)));
    almost_down(&mut w).await;
    let (logs, _guard) = Logs::capture();
    w.rounds(1, PROBE).await;
    assert_eq!(w.cloud.actions(WEB), [Stop]);
    let text = logs.text();
    assert!(text.contains("XSRF token"), "the cause is named: {text}");
    assert!(text.contains("power cycle follows"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn a_step_cut_off_by_a_crash_resumes_its_run_and_never_asks_again() {
    let (mut w, fake) = world(Effect::Cures, Duration::from_secs(40), "90s").await;
    almost_down(&mut w).await;
    tokio::time::advance(PROBE).await;
    let cut = tokio::time::timeout(Duration::from_secs(10), w.eng_mut().probe_round(true)).await;
    assert!(cut.is_err(), "cut off while the job runs");
    let disk = w.on_disk();
    let soft = &disk["clouds"]["indigo"]["instances"][WEB]["soft"];
    assert_eq!(soft["jid"], "20261203153012000001", "{disk}");
    w.restart();
    w.eng_mut().set_soft_cure(Some(fake.clone()));
    // The next round follows the same run; it cures.
    w.rounds(1, Duration::from_secs(5)).await;
    assert_eq!(fake.asked(), 1, "the job is never asked for twice");
    assert!(w.cloud.actions(WEB).is_empty());
    let rec = w.record(WEB);
    assert!(rec.soft.is_none() && rec.last_soft.unwrap().cured);
}

#[tokio::test(start_paused = true)]
async fn a_crash_before_the_job_was_accepted_goes_to_the_ladder_without_asking_again() {
    let (mut w, fake) = world(Effect::Cures, Duration::from_secs(5), "90s").await;
    *fake.answer_delay.lock().unwrap() = Duration::from_secs(60);
    almost_down(&mut w).await;
    tokio::time::advance(PROBE).await;
    let cut = tokio::time::timeout(Duration::from_secs(10), w.eng_mut().probe_round(true)).await;
    assert!(cut.is_err(), "cut off inside cmd.route_cmd");
    let disk = w.on_disk();
    assert!(disk["clouds"]["indigo"]["instances"][WEB]["soft"].is_object());
    w.restart();
    w.eng_mut().set_soft_cure(Some(fake.clone()));
    w.rounds(1, PROBE).await;
    assert_eq!(
        fake.asked(),
        1,
        "whether it ran is unknown: not asked again"
    );
    assert_eq!(w.cloud.actions(WEB), [Stop]);
    let detail = w.record(WEB).last_soft.unwrap().detail;
    assert!(detail.contains("not asked for twice"), "{detail}");
}

#[tokio::test(start_paused = true)]
async fn one_soft_step_per_incident_and_a_new_one_for_the_next() {
    let (mut w, fake) = world(Effect::Useless, Duration::from_secs(5), "90s").await;
    w.cloud.inst(WEB, |i| {
        i.stop_works = false;
        i.force_works = false;
    });
    almost_down(&mut w).await;
    w.rounds(1, PROBE).await;
    assert_eq!(fake.asked(), 1);
    // The ladder fails (the instance never stops); the incident goes on for an hour.
    w.rounds(120, PROBE).await;
    assert_eq!(fake.asked(), 1, "one soft step in this incident");
    assert!(w.record(WEB).incident_acted);
    // It answers again: the incident ends. The next one gets its own soft step.
    w.cloud.inst(WEB, |i| i.responsive = true);
    w.rounds(1, PROBE).await;
    assert!(!w.record(WEB).soft_tried);
    *fake.effect.lock().unwrap() = Effect::Cures;
    w.cloud.inst(WEB, |i| i.responsive = false);
    w.rounds(40, PROBE).await;
    assert_eq!(fake.asked(), 2);
    assert!(w.record(WEB).last_soft.unwrap().cured);
}

#[tokio::test(start_paused = true)]
async fn a_dry_run_names_the_job_it_would_run_and_runs_nothing() {
    let (mut w, fake) = world(Effect::Cures, Duration::from_secs(5), "90s").await;
    w.engine = None;
    let store = StateStore::open(w.dir.path()).unwrap();
    let provider: Arc<dyn Provider> = w.cloud.clone();
    let mut dry = Engine::new(Setup {
        config: w.config.clone(),
        resolvers: resolvers(&w.sources),
        clouds: Clouds::new().with(CloudName::indigo(), provider),
        store,
        dry_run: true,
        clock: clock(&w.wall, w.t0),
        prober: Arc::new(FakeProber(w.cloud.clone())),
    })
    .unwrap();
    dry.set_soft_cure(Some(fake.clone()));
    w.engine = Some(dry);
    w.cycle().await;
    let (logs, _guard) = Logs::capture();
    almost_down(&mut w).await;
    w.rounds(3, PROBE).await;
    let text = logs.text();
    assert!(
        text.contains(&format!("would run salt job {JOB} on target {TARGET}")),
        "{text}"
    );
    assert_eq!(
        text.matches("would run salt job").count(),
        1,
        "said once: {text}"
    );
    assert_eq!(fake.asked(), 0);
    assert!(w.cloud.actions(WEB).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_step_whose_salt_timeout_passed_while_dynwall_was_away_goes_to_the_ladder() {
    let (mut w, fake) = world(Effect::Hangs, Duration::from_secs(5), "30s").await;
    almost_down(&mut w).await;
    tokio::time::advance(PROBE).await;
    let cut = tokio::time::timeout(Duration::from_secs(10), w.eng_mut().probe_round(true)).await;
    assert!(cut.is_err(), "cut off while the job runs");
    w.restart();
    w.eng_mut().set_soft_cure(Some(fake.clone()));
    // Back after its salt_timeout: the ladder at once, no new job, no waiting.
    tokio::time::advance(Duration::from_secs(60)).await;
    let t = Instant::now();
    w.round().await;
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(fake.asked(), 1);
    assert_eq!(w.cloud.actions(WEB), [Stop]);
    let detail = w.record(WEB).last_soft.unwrap().detail;
    assert!(detail.contains("while dynwall was away"), "{detail}");
}
