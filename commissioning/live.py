"""How the profile in use agrees with the doctors' reads given since it was adopted."""

from __future__ import annotations

from dataclasses import dataclass

from scipy.stats import binomtest

from store import site_profiles
from store.site_profiles import StoredProfile
from store.database import Database


@dataclass(frozen=True)
class Proportion:
    hits: int
    total: int

    def describe(self) -> str:
        if not self.total:
            return "no cases yet"
        interval = binomtest(self.hits, self.total).proportion_ci(0.95, method="wilson")
        return f"{self.hits / self.total:.2f} ({self.hits}/{self.total}; 95% {interval.low:.2f}-{interval.high:.2f})"


@dataclass(frozen=True)
class LiveAgreement:
    reads: int
    sensitivity: Proportion  # confirmed bleeds the profile flagged
    specificity: Proportion  # confirmed normals it did not flag
    ppv: Proportion  # flagged studies that were confirmed bleeds

    def describe(self) -> str:
        if not self.reads:
            return "Since adoption: no doctor's read yet."
        return (f"Since adoption, against {self.reads} doctors' reads: sensitivity {self.sensitivity.describe()}, "
                f"specificity {self.specificity.describe()}, PPV {self.ppv.describe()}.")


def live_agreement(db: Database, profile: StoredProfile) -> LiveAgreement:
    reads = [case for case in site_profiles.reads_since(db, profile.created_at) if case.profile_id == profile.id]
    flagged = [case.verdict == "hemorrhage" for case in reads]
    bleeds = [bool(case.label) for case in reads]
    pairs = list(zip(flagged, bleeds))
    return LiveAgreement(
        reads=len(reads),
        sensitivity=Proportion(sum(f and b for f, b in pairs), sum(bleeds)),
        specificity=Proportion(sum(not f and not b for f, b in pairs), len(bleeds) - sum(bleeds)),
        ppv=Proportion(sum(f and b for f, b in pairs), sum(flagged)),
    )
