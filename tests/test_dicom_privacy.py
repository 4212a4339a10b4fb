"""Privacy of pushed studies: nothing identifying is stored, logged or sent, nor written to the spool, whether it
sits at the top of the header, nested in sequences or in private tags; studies are known by a hash of their Study
Instance UID; the accession number is the one identifier kept, and DICOM_NOTIFY_FIELDS=none keeps not even that.
The de-identification is checked against the table of PS3.15 Annex E shipped by `dicom-anonymizer`."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import warnings
from pathlib import Path

import psycopg
import pytest
from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
from pydicom import dcmread
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from stores import store_settings

from core.settings import Settings
from dicomnode.deidentify import KEPT, RETAINED_BY_OPTION, deidentify
from dicomnode.node import DicomNode
from dicomnode.spool import uid_hash
from hemowatch.builders import analyzer_from_settings
from inference.analyzer import Analyzer
from store import is_postgres_url, open_database
from store.studies import recent_studies
from testsupport.broker import free_port
from testsupport.dicom import push
from testsupport.waiting import eventually

pytestmark = pytest.mark.timeout(120)
IDENTITY = {
    "PatientName": "DOE^JANE", "PatientID": "MRN-778899", "PatientBirthDate": "19580214",
    "InstitutionName": "St Elsewhere General", "ReferringPhysicianName": "HOUSE^GREGORY",
}
ACCESSION = "ACC20261126"
# Where scanners and PACS also leave identifiers: nested, in private tags, in comments.
ORIGINAL_NAME, ORIGINAL_ID = "ROE^RICHARD", "MRN-OLD-4411"
PRIVATE_VALUE = "DOE JANE 1958 WARD 7"
ELSEWHERE = {
    "PatientComments": "Jane, daughter of Mary Doe", "PatientBirthName": "SMITH^JANE",
    "PhysiciansOfRecord": "WILSON^JAMES", "IssuerOfPatientID": "ST-ELSEWHERE-MRN",
}
ANNEX_E = dicom_anonymization_database_selector("dicomfields_2026c")["ALL_TAGS"]
MARKER = "MARK"


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return analyzer_from_settings(Settings(_env_file=None), threshold=0.3)


def identified_series(ge_series_dir: Path, folder: Path) -> list[Path]:
    """The GE series as a scanner would send it: with a name, an id, a birth date and so on."""
    folder.mkdir()
    paths = []
    for source in sorted(ge_series_dir.glob("*.dcm")):
        dataset = dcmread(source)
        for keyword, value in (IDENTITY | ELSEWHERE).items():
            setattr(dataset, keyword, value)
        modified = Dataset()
        modified.PatientName, modified.PatientID = ORIGINAL_NAME, ORIGINAL_ID
        original = Dataset()
        original.ModifiedAttributesSequence = Sequence([modified])
        original.ModifyingSystem, original.ReasonForTheAttributeModification = "RIS", "CORRECT"
        dataset.OriginalAttributesSequence = Sequence([original])
        dataset.private_block(0x0009, "ACME SCANNER", create=True).add_new(0x01, "LO", PRIVATE_VALUE)
        dataset.AccessionNumber = ACCESSION
        dataset.StudyDate, dataset.StudyTime = "20261126", "140215"
        paths.append(folder / source.name)
        dataset.save_as(paths[-1])
    return paths


@pytest.mark.parametrize("notify_fields", ["accession", "none"])
async def test_nothing_identifying_is_stored_or_logged(
    database: Path | str, tmp_path: Path, analyzer: Analyzer, ge_series_dir: Path, caplog: pytest.LogCaptureFixture,
    notify_fields: str,
) -> None:
    paths = identified_series(ge_series_dir, tmp_path / "series")
    settings = Settings(_env_file=None, dicom_port=free_port(), dicom_series_idle_s=0.3,
                        dicom_notify_fields=notify_fields, **store_settings(database, tmp_path))
    caplog.set_level(logging.DEBUG)
    async with DicomNode(settings, analyzer) as node:
        seen_in_spool: list[bytes] = []

        def spy() -> None:
            seen_in_spool.extend(path.read_bytes() for path in (tmp_path / "dicom-spool").rglob("*.dcm"))

        assert await asyncio.to_thread(push, node.port, paths[:27]) == [0] * 27
        await asyncio.to_thread(spy)
        assert await asyncio.to_thread(push, node.port, paths[27:]) == [0]
        await eventually(lambda: node.idle and recent_studies(open_database(database)), 60, "the study")
    (study,) = recent_studies(open_database(database))
    assert study.study_hash == uid_hash(dcmread(paths[0]).StudyInstanceUID)
    assert study.accession == (ACCESSION if notify_fields == "accession" else None)
    assert study.study_time == "2026-11-26 14:02"
    stored = everything_stored(database)
    logged = caplog.text
    assert seen_in_spool
    for value in [*IDENTITY.values(), *ELSEWHERE.values(), ORIGINAL_NAME, ORIGINAL_ID, PRIVATE_VALUE]:
        assert value.encode() not in stored, f"{value} in the database"
        assert value not in logged, f"{value} in the log"
        assert not [data for data in seen_in_spool if value.encode() in data], f"{value} in the spool"
    assert dcmread(paths[0]).StudyInstanceUID.encode() not in stored


def everything_stored(database: Path | str) -> bytes:
    """All the store holds: the bytes of the SQLite file and its journals, or every value in every table of the
    PostgreSQL database (text as UTF-8, bytea as is)."""
    if not is_postgres_url(database):
        return b"".join(path.read_bytes() for path in Path(database).parent.glob(f"{Path(database).name}*"))
    with psycopg.connect(str(database)) as connection:
        tables = connection.execute("select tablename from pg_tables where schemaname = current_schema()").fetchall()
        rows = [row for (table,) in tables for row in connection.execute(f'select * from "{table}"')]
    values = [value for row in rows for value in row]
    return b"".join(value if isinstance(value, bytes) else str(value).encode() for value in values)


def annex_e_dataset(depth: int) -> Dataset:
    """Every attribute of Annex E's table that pydicom's dictionary knows, each holding a marker; each sequence
    holds such a dataset again, `depth` levels down."""
    dataset = Dataset()
    for group, element in (tag for tag in ANNEX_E if len(tag) == 2):
        tag = group << 16 | element
        try:
            vr = dictionary_VR(tag)
        except KeyError:  # retired from pydicom's dictionary
            continue
        vr = vr.split(" or ")[0]
        if vr == "SQ":
            dataset.add_new(tag, vr, Sequence([annex_e_dataset(depth - 1)] if depth else []))
        elif vr == "UI":
            dataset.add_new(tag, vr, "1.2.3.999")
        elif vr in ("US", "SS", "UL", "SL", "FL", "FD", "UV", "SV", "AT"):
            continue  # numbers and tags carry no marker
        elif vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
            dataset.add_new(tag, vr, MARKER.encode())
        elif vr in ("DA", "DT", "TM", "AS", "DS", "IS"):
            dataset.add_new(tag, vr, {"DA": "19580214", "DT": "19580214", "TM": "1402", "AS": "067Y", "DS": "7",
                                      "IS": "7"}[vr])
        else:
            dataset.add_new(tag, vr, MARKER)
    for group, element, text in ((0x6000, 0x4000, MARKER), (0x5000, 0x3000, MARKER)):  # overlay, curve comments
        dataset.add_new(group << 16 | element, "LT", text)
    dataset.AccessionNumber = ACCESSION  # kept on request: told apart from what must go
    return dataset


def left(dataset: Dataset) -> set[str]:
    """The keywords (or tags) of every attribute still in `dataset`, at any depth."""
    found = set()
    for element in dataset.iterall():
        found.add(keyword_for_tag(element.tag) or str(element.tag))
    return found


@pytest.mark.parametrize("keep_accession", [True, False], ids=["accession", "none"])
def test_every_attribute_annex_e_removes_is_removed_at_every_depth(keep_accession: bool) -> None:
    dataset = annex_e_dataset(depth=2)
    dataset.SharedFunctionalGroupsSequence = Sequence([annex_e_dataset(depth=1)])  # nested in a kept sequence
    dataset.private_block(0x0011, "ACME", create=True).add_new(0x01, "LO", MARKER)
    deidentify(dataset, keep_accession)
    retained = RETAINED_BY_OPTION | ({"AccessionNumber"} if keep_accession else set())
    assert left(dataset) == {"SharedFunctionalGroupsSequence"} | retained
    encoded = DicomBytesIO()
    encoded.is_little_endian, encoded.is_implicit_VR = True, False
    write_dataset(encoded, dataset)
    assert MARKER.encode() not in encoded.getvalue()
    assert len(dataset.SharedFunctionalGroupsSequence[0]) == len(retained)


def test_what_is_kept_is_outside_annex_e_but_for_its_named_options() -> None:
    annex_e = {keyword_for_tag(group << 16 | element) for group, element in (t for t in ANNEX_E if len(t) == 2)}
    assert KEPT & annex_e == RETAINED_BY_OPTION
    assert all(tag_for_keyword(keyword) is not None for keyword in KEPT)


@pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk is not installed (apt-get install dcmtk)")
async def test_a_malformed_uid_reaches_neither_the_log_nor_the_warnings(
    database: Path | str, tmp_path: Path, analyzer: Analyzer, ge_series_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Sent by dcmtk's storescu, in a process of its own, so all that is logged and warned here is the node's."""
    dataset = dcmread(sorted(ge_series_dir.glob("*.dcm"))[0])
    study_uid = "1.2.826.0.1.3680043.8.498.4711\x00.1"  # a NUL byte inside: not a valid UID
    dataset.StudyInstanceUID = study_uid
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.4712\x00.7"
    path = tmp_path / "malformed.dcm"
    dataset.save_as(path)
    settings = Settings(_env_file=None, dicom_port=free_port(), dicom_series_idle_s=60,
                        **store_settings(database, tmp_path))
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        async with DicomNode(settings, analyzer) as node:
            stored = await asyncio.to_thread(
                subprocess.run, ["storescu", "-aet", "CTSCANNER", "-aec", "HEMOWATCH", "127.0.0.1", str(node.port),
                                 str(path)], capture_output=True, text=True)
    assert stored.returncode == 0, stored.stderr
    assert (tmp_path / "dicom-spool" / uid_hash(study_uid)).is_dir()
    said = caplog.text + "".join(str(warning.message) for warning in warned)
    assert "3680043.8.498.4711" not in said and "3680043.8.498.4712" not in said
