"""Every job's settings variable fails the same way: one ConfigurationError naming the variable (#16)."""

from __future__ import annotations

import pytest

from ps_integrations.exceptions import ConfigurationError


def _settings_classes():
    from ps_integrations.domain.opportunity_sync import SyncConfig
    from ps_integrations.jobs.csat_summary.job import SummaryConfig
    from ps_integrations.jobs.csat_surveys.config import SurveyConfig
    from ps_integrations.jobs.engagement_closeout.config import CloseoutConfig
    from ps_integrations.jobs.sku_reconciliation.config import ReconciliationConfig
    from ps_integrations.jobs.timesheets.config import RollupConfig

    return [SyncConfig, SummaryConfig, SurveyConfig, CloseoutConfig, ReconciliationConfig, RollupConfig]


@pytest.mark.parametrize("settings", _settings_classes(), ids=lambda cls: cls.__name__)
def test_an_unknown_setting_a_non_object_and_defaults_per_job(settings):
    assert settings.from_mapping({}) == settings()  # an empty variable is the defaults
    with pytest.raises(ConfigurationError, match=r"unknown settings \['recipents'\]"):
        settings.from_mapping({"recipents": "typo@example.com"})
    with pytest.raises(ConfigurationError, match="must be a JSON object, not list"):
        settings.from_mapping(["not", "an", "object"])


def test_a_value_the_settings_refuse_is_a_configuration_error_naming_the_variable():
    from dataclasses import dataclass

    from ps_integrations.settings import settings_from_mapping

    @dataclass(frozen=True)
    class Limits:
        per_minute: int = 60

        def __post_init__(self) -> None:
            if self.per_minute <= 0:
                raise ValueError("per_minute must be positive")

    assert settings_from_mapping(Limits, {"per_minute": 5}, "ps_example_config") == Limits(5)
    with pytest.raises(ConfigurationError, match="ps_example_config: per_minute must be positive"):
        settings_from_mapping(Limits, {"per_minute": 0}, "ps_example_config")
