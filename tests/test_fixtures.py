"""sop_device, sop_account, sop_driver and sop_run in Python tests, on the fake driver via real Appium."""

from __future__ import annotations

import pytest
from test_engine_fake import FAKE_CONFIG, own_locks


def test_driver_and_run_from_python(pytester: pytest.Pytester, appium_url: str) -> None:
    pytester.makefile(".yaml", sop=FAKE_CONFIG + "accounts:\n  - id: tester\n    role: qa\n    fields: {name: alice}\n")
    (pytester.path / "type-name.sop.yaml").write_text(
        "id: type-name\nrequires:\n  account: {role: qa}\nsteps:\n"
        "  - type: {into: {id: username}, text: '${account.name}'}\n"
        "  - save_text: {from: {id: username}, as: typed}\n"
    )
    pytester.makepyfile(
        test_py="""
        import pytest
        from pytest_sop.errors import StepFailed

        @pytest.mark.sop(device={"platform": "fake"}, account={"role": "qa"})
        def test_fixtures(sop_driver, sop_run, sop_device, sop_account):
            assert sop_device.id == "fake-phone" and sop_account.id == "tester"
            saved = sop_run("type-name")
            assert saved == {"typed": "alice"}
            assert sop_driver.find_element("id", "username").text == "alice"
            sop_run([{"clear": {"id": "username"}}, {"assert_text": {"in": {"id": "username"}, "equals": ""}}])
            with pytest.raises(StepFailed, match="expected it to equal 'bob'"):
                sop_run([{"assert_text": {"in": {"id": "username"}, "equals": "bob"}, "timeout": 0.2}])

        @pytest.mark.parametrize("sop_device", [{"id": "fake-phone"}], indirect=True)
        def test_indirect(sop_device):
            assert sop_device.platform == "fake"

        def test_bad_steps_are_refused(sop_run):
            from pytest_sop.errors import SopInvalid
            with pytest.raises(SopInvalid, match="unknown action 'tapp'"):
                sop_run([{"tapp": {"id": "x"}}])
        """
    )
    # No --sop: SOP files are not collected, the fixtures still work.
    result = pytester.runpytest("--sop-appium", appium_url, "-p", "no:cacheprovider", *own_locks(pytester.path))
    result.assert_outcomes(passed=3)
