"""Hub fallback: rows in the real hub formats become exactly the examples the local readers make.

`datasets.load_dataset` is replaced by a fake hub of in-memory Datasets whose columns and
features copy the real ones (nyu-mll/glue, aps/super_glue, rajpurkar/squad, ucinlp/drop); each
case writes the same content as local files in the original formats and compares the two loads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import SimpleNamespace

import datasets
import pytest
from datasets import ClassLabel, Dataset, Features, Sequence, Value

from beft.tasks import TASKS, TaskDataError, get_task
from beft.tasks.hub import HUB, records

OFFLINE = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
LABELLED = {"train", "validation", "validation_matched", "validation_mismatched"}
STR, I32 = Value("string"), Value("int32")
BOOL = ClassLabel(names=["False", "True"])


@dataclass
class Case:
    arch: str
    task: str
    files: dict[str, str]  # local relative path -> file text
    hub: dict[tuple, Dataset]  # (name, config, split) -> hub rows

    def __str__(self) -> str:
        return f"{self.arch}-{self.task}"


@pytest.fixture()
def hub(monkeypatch):
    """Online, no data folder, and a fake hub that only knows what a test puts in `store`."""
    for var in (*OFFLINE, "BEFT_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    fake = SimpleNamespace(store={}, calls=[])

    def load_dataset(path, name=None, split=None, **kw):
        fake.calls.append((path, name, split))
        if (path, name, split) not in fake.store:
            raise ConnectionError(f"not on the fake hub: {path} {name} {split}")
        return fake.store[path, name, split]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return fake


# ---- GLUE: one row spec per config; the hub's ClassLabel names in the hub's order ----

NLI2, NLI3 = ["entailment", "not_entailment"], ["entailment", "neutral", "contradiction"]
# config: (folder, hub text columns, ClassLabel names (None: float score), local header, line)
GLUE = {
    "sst2": ("SST-2", ("sentence",), ["negative", "positive"], "sentence\tlabel", "{a}\t{y}"),
    "cola": ("CoLA", ("sentence",), ["unacceptable", "acceptable"], None, "gj04\t{y}\t\t{a}"),
    "mrpc": (
        "MRPC",
        ("sentence1", "sentence2"),
        ["not_equivalent", "equivalent"],
        "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String",
        "{y}\t11\t12\t{a}\t{b}",
    ),
    "stsb": (
        "STS-B",
        ("sentence1", "sentence2"),
        None,
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore",
        "0\tmain-news\tf\t2012\t0\tnone\tnone\t{a}\t{b}\t{y}",
    ),
    "qqp": (
        "QQP",
        ("question1", "question2"),
        ["not_duplicate", "duplicate"],
        "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
        "0\t1\t2\t{a}\t{b}\t{y}",
    ),
    "qnli": (
        "QNLI",
        ("question", "sentence"),
        NLI2,
        "index\tquestion\tsentence\tlabel",
        "0\t{a}\t{b}\t{name}",
    ),
    "mnli": (
        "MNLI",
        ("premise", "hypothesis"),
        NLI3,
        "index\tgenre\tsentence1\tsentence2\tlabel1\tgold_label",
        "0\tfiction\t{a}\t{b}\t{name}\t{name}",
    ),
    "rte": (
        "RTE",
        ("sentence1", "sentence2"),
        NLI2,
        "index\tsentence1\tsentence2\tlabel",
        "0\t{a}\t{b}\t{name}",
    ),
}
SCORES = (3.8, 0.667, 5.0)  # float32 on the hub: 3.8 reads back as 3.799999952
TRAIN = [
    ('A "quiet", fine film.', "It is calm."),
    ("Dull.", "It bores."),
    ("Odd one.", "Hmm, odd."),
]
DEV = [("Last night's show.", "A show."), ("Great!", "Good.")]


def glue_case(arch: str, task: str) -> Case:
    config = task.split("-")[0]
    folder, cols, names, header, line = GLUE[config]
    dev, split = {
        "mnli": ("dev_matched.tsv", "validation_matched"),
        "mnli-mm": ("dev_mismatched.tsv", "validation_mismatched"),
    }.get(task, ("dev.tsv", "validation"))
    features = Features(
        {
            **{c: STR for c in cols},
            "idx": I32,
            "label": Value("float32") if names is None else ClassLabel(names=names),
        }
    )
    files, hub = {}, {}
    for file, hub_split, texts in (("train.tsv", "train", TRAIN), (dev, split, DEV)):
        ys = [SCORES[k] if names is None else k % len(names) for k in range(len(texts))]
        lines = [
            line.format(a=a, b=b, y=y, name=names and names[y]) for (a, b), y in zip(texts, ys)
        ]
        files[f"glue/{folder}/{file}"] = "".join(f"{x}\n" for x in [header] * bool(header) + lines)
        rows = [
            {**dict(zip(cols, ab)), "label": y, "idx": k}
            for k, (ab, y) in enumerate(zip(texts, ys))
        ]
        hub["nyu-mll/glue", config, hub_split] = Dataset.from_list(rows, features=features)
    return Case(arch, task, files, hub)


# ---- SuperGLUE flat records: local JSONL object k; the hub row is its fields plus a ClassLabel
# ----


def sg_object(task: str, k: int) -> dict:
    return {
        "cb": {
            "premise": f"It rained {k} times.",
            "hypothesis": "The ground is wet.",
            "idx": k,
            "label": ["entailment", "contradiction", "neutral"][k % 3],
        },
        "rte": {
            "premise": f"Paris {k} is in France.",
            "hypothesis": "Paris is French.",
            "idx": k,
            "label": NLI2[k % 2],
        },
        "boolq": {
            "question": f"is it wet {k}",
            "passage": "It rained.",
            "idx": k,
            "label": k % 2 == 0,
        },
        "copa": {
            "premise": f"The man {k} fell.",
            "choice1": "He slipped.",
            "choice2": "He sang.",
            "question": ["cause", "effect"][k % 2],
            "idx": k,
            "label": k % 2,
        },
        "wsc": {
            "text": f"Mark told Pete {k} he was late.",
            "idx": k,
            "label": k % 2 == 1,
            "target": {
                "span1_index": 0,
                "span1_text": "Mark",
                "span2_index": 4,
                "span2_text": "he",
            },
        },
    }[task]


SG_FLAT = {  # task: (folder, hub config, hub columns, ClassLabel names)
    "cb": ("CB", "cb", ("premise", "hypothesis"), ["entailment", "contradiction", "neutral"]),
    "rte": ("RTE", "rte", ("premise", "hypothesis"), NLI2),
    "boolq": ("BoolQ", "boolq", ("question", "passage"), ["False", "True"]),
    "copa": ("COPA", "copa", ("premise", "choice1", "choice2", "question"), ["choice1", "choice2"]),
    "wsc": (
        "WSC",
        "wsc.fixed",
        ("text", "span1_index", "span2_index", "span1_text", "span2_text"),
        ["False", "True"],
    ),
}


def hf_label(value, names: list[str]) -> int:
    """The hub builder's cast: bools become 'True'/'False'; COPA's 0/1 become
    'choice1'/'choice2'."""
    return value if names[0] == "choice1" else names.index(str(value))


def sg_flat_case(arch: str, task: str) -> Case:
    folder, config, cols, names = SG_FLAT[task]
    features = Features(
        {c: I32 if c.endswith("_index") else STR for c in cols}
        | {"idx": I32, "label": ClassLabel(names=names)}
    )
    files, hub = {}, {}
    for file, split, n in (("train.jsonl", "train", 3), ("val.jsonl", "validation", 2)):
        objs = [sg_object(task, k) for k in range(n)]
        files[f"superglue/{folder}/{file}"] = "".join(json.dumps(o) + "\n" for o in objs)
        flat = [{**o, **o.get("target", {})} for o in objs]
        rows = [
            {**{c: f[c] for c in cols}, "idx": f["idx"], "label": hf_label(f["label"], names)}
            for f in flat
        ]
        hub["aps/super_glue", config, split] = Dataset.from_list(rows, features=features)
    return Case(arch, task, files, hub)


def wic_case(arch: str) -> Case:
    rows = [
        ("bank", "N", "1-2", f"The bank {k} is open.", "We sat on the bank.", "TF"[k % 2])
        for k in range(3)
    ]
    features = Features(
        {
            "word": STR,
            "sentence1": STR,
            "sentence2": STR,
            "start1": I32,
            "start2": I32,
            "end1": I32,
            "end2": I32,
            "idx": I32,
            "label": BOOL,
        }
    )
    files, hub = {}, {}
    for part, split, n in (("train", "train", 3), ("dev", "validation", 2)):
        files[f"wic_original/{part}/{part}.data.txt"] = "".join(
            "\t".join(r[:5]) + "\n" for r in rows[:n]
        )
        files[f"wic_original/{part}/{part}.gold.txt"] = "".join(r[5] + "\n" for r in rows[:n])
        hub["aps/super_glue", "wic", split] = Dataset.from_list(
            [
                {
                    "word": w,
                    "sentence1": s1,
                    "sentence2": s2,
                    "start1": 4,
                    "start2": 15,
                    "end1": 8,
                    "end2": 19,
                    "idx": k,
                    "label": int(g == "T"),
                }
                for k, (w, _, _, s1, s2, g) in enumerate(rows[:n])
            ],
            features=features,
        )
    return Case(arch, "wic", files, hub)


def multirc_case() -> Case:
    def passage(p: int) -> dict:
        return {
            "idx": p,
            "passage": {
                "text": f"<b>Sent 1: </b>Ann met Bob {p}.<br>",
                "questions": [
                    {
                        "question": f"Who met Bob {q}?",
                        "idx": q,
                        "answers": [
                            {"text": "Ann", "idx": 2 * q, "label": 1},
                            {"text": "Cid", "idx": 2 * q + 1, "label": 0},
                        ],
                    }
                    for q in range(2)
                ],
            },
        }

    features = Features(
        {
            "paragraph": STR,
            "question": STR,
            "answer": STR,
            "label": BOOL,
            "idx": {"paragraph": I32, "question": I32, "answer": I32},
        }
    )
    files, hub = {}, {}
    for file, split, ps in (("train.jsonl", "train", (0, 1)), ("val.jsonl", "validation", (2,))):
        objs = [passage(p) for p in ps]
        files[f"superglue/MultiRC/{file}"] = "".join(json.dumps(o) + "\n" for o in objs)
        hub["aps/super_glue", "multirc", split] = Dataset.from_list(
            [
                {
                    "paragraph": o["passage"]["text"],
                    "question": q["question"],
                    "answer": a["text"],
                    "label": a["label"],
                    "idx": {"paragraph": o["idx"], "question": q["idx"], "answer": a["idx"]},
                }
                for o in objs
                for q in o["passage"]["questions"]
                for a in q["answers"]
            ],
            features=features,
        )
    return Case("decoder", "multirc", files, hub)


def record_case() -> Case:
    text = "Obama met Merkel in Berlin.\n@highlight\nTalks went well"
    spans = [(0, 4), (10, 15), (20, 25), (0, 4)]  # passage order, one repeat (as the files have)
    features = Features(
        {
            "passage": STR,
            "query": STR,
            "entities": Sequence(STR),
            "answers": Sequence(STR),
            "entity_spans": Sequence({"text": STR, "start": I32, "end": I32}),
            "idx": {"passage": I32, "query": I32},
        }
    )
    files, hub = {}, {}
    for file, split, n in (("train.jsonl", "train", 3), ("val.jsonl", "validation", 2)):
        objs = [
            {
                "idx": i,
                "passage": {"text": text, "entities": [{"start": s, "end": e} for s, e in spans]},
                "qas": [
                    {
                        "idx": i,
                        "query": f"@placeholder is in Germany {i}.",
                        "answers": [{"start": 20, "end": 25, "text": "Berlin"}],
                    }
                ],
            }
            for i in range(n)
        ]
        files[f"superglue/ReCoRD/{file}"] = "".join(json.dumps(o) + "\n" for o in objs)
        ordered = sorted(spans)  # the hub: entity_spans sorted by start, entities a sorted set
        hub["aps/super_glue", "record", split] = Dataset.from_list(
            [
                {
                    "passage": text,
                    "query": o["qas"][0]["query"],
                    "answers": ["Berlin"],
                    "entities": sorted({text[s : e + 1] for s, e in spans}),
                    "entity_spans": {
                        "text": [text[s : e + 1] for s, e in ordered],
                        "start": [s for s, _ in ordered],
                        "end": [e for _, e in ordered],
                    },
                    "idx": {"passage": o["idx"], "query": o["qas"][0]["idx"]},
                }
                for o in objs
            ],
            features=features,
        )
    return Case("decoder", "record", files, hub)


def squad_case() -> Case:
    features = Features(
        {
            "id": STR,
            "title": STR,
            "context": STR,
            "question": STR,
            "answers": Sequence({"text": STR, "answer_start": I32}),
        }
    )
    files, hub = {}, {}
    for file, split, n in (("train-v1.1.json", "train", 3), ("dev-v1.1.json", "validation", 2)):
        qas = [
            {
                "id": f"q{k}",
                "question": f"Capital {k}?",
                "answers": [
                    {"answer_start": 0, "text": "Paris"},
                    {"answer_start": 0, "text": "Paris city"},
                ],
            }
            for k in range(n)
        ]
        context = "Paris is the capital of France."
        files[f"squad/{file}"] = json.dumps(
            {
                "version": "1.1",
                "data": [{"title": "Paris", "paragraphs": [{"context": context, "qas": qas}]}],
            }
        )
        hub["rajpurkar/squad", None, split] = Dataset.from_list(
            [
                {
                    "id": q["id"],
                    "title": "Paris",
                    "context": context,
                    "question": q["question"],
                    "answers": {"text": [a["text"] for a in q["answers"]], "answer_start": [0, 0]},
                }
                for q in qas
            ],
            features=features,
        )
    return Case("decoder", "squad", files, hub)


def drop_answer(number="", spans=(), day="", month="", year="") -> dict:
    return {
        "number": number,
        "spans": list(spans),
        "date": {"day": day, "month": month, "year": year},
    }


def drop_hub_entries(answers: list[dict]) -> dict:
    """The hub builder: one entry per number / date ('day month year', blanks kept) / span."""
    out = {"spans": [], "types": []}
    for a in answers:
        date = a["date"]
        if a["number"]:
            out["spans"].append(a["number"]), out["types"].append("number")
        elif any(date.values()):
            out["spans"].append(" ".join([date["day"], date["month"], date["year"]]).strip())
            out["types"].append("date")
        for s in a["spans"]:
            out["spans"].append(s), out["types"].append("span")
    return out


def drop_case() -> Case:
    train_qas = [
        ("How many goals?", drop_answer("7"), []),
        ("Who scored?", drop_answer(spans=["Ann", "Bob"]), []),  # one multi-span answer
        ("When?", drop_answer(day="4", year="1990"), []),
    ]
    dev_qas = [
        ("How many?", drop_answer("7"), [drop_answer("7"), drop_answer(spans=["seven"])]),
        (
            "When was it?",
            drop_answer(month="July", year="1990"),
            [drop_answer(month="July", year="1990")],
        ),
    ]
    features = Features(
        {
            "section_id": STR,
            "query_id": STR,
            "passage": STR,
            "question": STR,
            "answers_spans": Sequence({"spans": STR, "types": STR}),
        }
    )
    files, hub = {}, {}
    for file, split, qas in (
        ("drop_dataset_train.json", "train", train_qas),
        ("drop_dataset_dev.json", "validation", dev_qas),
    ):
        data = {
            f"p{i}": {
                "passage": f"Passage {i}: 3 goals, then 4.",
                "qa_pairs": [
                    {"question": q, "query_id": f"{split}{i}", "answer": a, "validated_answers": v}
                ],
            }
            for i, (q, a, v) in enumerate(qas)
        }
        files[f"drop/{file}"] = json.dumps(data)
        hub["ucinlp/drop", None, split] = Dataset.from_list(
            [
                {
                    "section_id": pid,
                    "query_id": qa["query_id"],
                    "passage": item["passage"],
                    "question": qa["question"],
                    "answers_spans": drop_hub_entries(
                        [qa["answer"]] if split == "train" else qa["validated_answers"]
                    ),
                }
                for pid, item in data.items()
                for qa in item["qa_pairs"]
            ],
            features=features,
        )
    return Case("decoder", "drop", files, hub)


CASES = (
    [
        glue_case("encoder", t)
        for t in ("sst2", "cola", "mrpc", "stsb", "qqp", "qnli", "mnli", "mnli-mm", "rte")
    ]
    + [
        glue_case("decoder", "sst2"),
        sg_flat_case("encoder", "cb"),
        wic_case("encoder"),
        wic_case("decoder"),
    ]
    + [sg_flat_case("decoder", t) for t in SG_FLAT]
    + [multirc_case(), record_case(), squad_case(), drop_case()]
)


def write(root, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_hub_rows_equal_local_rows(case, hub, tmp_path):
    write(tmp_path, case.files)
    task = get_task(case.task, arch=case.arch)
    local = task.load(str(tmp_path), "all", 0)
    assert local.train and local.eval and not hub.calls  # local files win; the hub is not asked
    hub.store.update(case.hub)
    online = task.load(None, "all", 0)
    assert online.train == local.train
    assert online.eval == local.eval
    assert {split for _, _, split in hub.calls} <= LABELLED
    assert any(str(HUB[task.data.eval]) in n for n in online.notes)
    assert any(str(HUB[task.data.train]) in n for n in online.notes)


def test_missing_local_file_falls_back_to_the_hub(hub, tmp_path):
    case = glue_case("encoder", "rte")
    hub.store.update(case.hub)
    splits = get_task("rte").load(str(tmp_path), "all", 0)  # a data folder without RTE
    assert len(splits.train) == 3 and len(splits.eval) == 2
    assert any("no local glue/RTE/dev.tsv; read from the hub" in n for n in splits.notes)


def test_local_eval_without_train_stays_local(hub, tmp_path):
    """A local eval file is never mixed with hub train rows: both sides come from it."""
    write(
        tmp_path,
        {"glue/SST-2/dev.tsv": "sentence\tlabel\n" + "".join(f"s{i}\t{i % 2}\n" for i in range(8))},
    )
    splits = get_task("sst2").load(str(tmp_path), "all", 0)
    assert not hub.calls and any("disjointly from glue/SST-2/dev.tsv" in n for n in splits.notes)


@pytest.mark.parametrize("var", OFFLINE)
def test_offline_without_files_names_both_ways(hub, var, monkeypatch, tmp_path):
    monkeypatch.setenv(var, "1")
    with pytest.raises(
        TaskDataError,
        match=r"no task data folder: .*BEFT_DATA_DIR.*<data_dir>/glue/SST-2/"
        r"train.tsv; or go online .*nyu-mll/glue config sst2 split validation",
    ):
        get_task("sst2").load(None, "low", 0)
    with pytest.raises(
        TaskDataError,
        match=r"missing .*squad/dev-v1.1.json: .*BEFT_DATA_DIR.*"
        r"HF_HUB_OFFLINE.*rajpurkar/squad split validation",
    ):
        get_task("squad", arch="decoder").load(str(tmp_path), "low", 0)
    assert not hub.calls


def test_unreachable_hub_is_a_task_data_error(hub):
    with pytest.raises(
        TaskDataError,
        match=r"cannot load hub nyu-mll/glue config rte split validation "
        r"\(ConnectionError.*BEFT_DATA_DIR",
    ):
        get_task("rte").load(None, "low", 0)


def test_unlabeled_hub_row_is_refused(hub):
    hub.store.update(sg_flat_case("decoder", "cb").hub)
    rows = [{"premise": "p", "hypothesis": "h", "idx": 0, "label": -1}]
    hub.store["aps/super_glue", "cb", "validation"] = Dataset.from_list(rows)
    with pytest.raises(
        TaskDataError, match=r"aps/super_glue config cb split validation row 0: .*unlabeled"
    ):
        get_task("cb", arch="decoder").load(None, "low", 0)


def test_every_task_file_has_a_labelled_hub_split():
    for arch, names in TASKS.items():
        for name in names:
            spec = get_task(name, arch=arch).data
            for rel in (spec.train, spec.eval):
                assert rel in HUB, f"{arch} {name}: no hub split for {rel}"
                assert HUB[rel].split in LABELLED


def test_records_reads_both_sequence_layouts():
    as_lists = {"text": ["a", "b"], "start": [0, 2]}
    assert records(as_lists) == records([{"text": "a", "start": 0}, {"text": "b", "start": 2}])
    assert records(as_lists)[1] == {"text": "b", "start": 2}
