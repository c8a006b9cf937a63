"""The one table of output formats: the CRD offers exactly its formats, and
every data key the operator may write comes from it."""

from __future__ import annotations

from typing import Any

import yaml

from mtls_operator.api.outputs import (
    ADDITIONAL_FORMATS,
    BASE_DATA_KEYS,
    MANAGED_DATA_KEYS,
    PKCS12_KEYSTORES,
    OutputFormat,
    expected_data_keys,
)

from support.paths import REPO_ROOT

CRD = REPO_ROOT / "crds" / "mtlscertificates.yaml"


def spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    [version] = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def test_the_crd_enum_is_the_table() -> None:
    entry = spec_schema()["properties"]["additionalOutputFormats"]["items"]
    assert entry["properties"]["type"]["enum"] == [f.value for f in OutputFormat]
    assert set(ADDITIONAL_FORMATS) == set(OutputFormat)


def test_every_managed_key_has_one_source() -> None:
    sources = [BASE_DATA_KEYS, *(o.data_keys for o in ADDITIONAL_FORMATS.values())]
    sources.append(frozenset(PKCS12_KEYSTORES.data_keys))
    keys = [key for source in sources for key in source]
    assert len(keys) == len(set(keys)), "a data key written by two outputs"
    assert set(keys) == MANAGED_DATA_KEYS


def test_expected_keys_follow_the_spec() -> None:
    assert expected_data_keys([], keystores=False) == BASE_DATA_KEYS
    assert expected_data_keys(list(OutputFormat), keystores=True) == MANAGED_DATA_KEYS
