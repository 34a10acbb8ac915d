"""The folders of a whole run, before its first stage starts: each checked as run_stage will check it
(check_folders_first) and, with --overwrite, the others deleted with the first stage's, once its
inputs are checked (clear_later_folders). Used by runner.run_pipeline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from . import dumps as dump_runs
from .folder_lock import folder_locks
from .output_folder import check_output_folder, check_output_not_input, config_paths, overwrite_folder
from .wiring import wire_stage_config

if TYPE_CHECKING:
    from .definition import Pipeline


def state_paths(config: Any, fields: Sequence[str]) -> list[str]:
    """The paths of a stage config's `state_fields` that are set (Stage.state_fields)."""
    return [str(getattr(config, name)) for name in fields if getattr(config, name, None)]


def check_folders_first(run_config: Any, pipeline: Pipeline, units: Sequence[Any], overwrite: bool, append: bool = False) -> None:
    """Before the first stage of a run starts: every stage folder the run will write is checked as
    `run_stage` checks it (not someone else's folder; with `overwrite`, nothing in it a stage never
    writes; not one of the folders and files its config reads), so that a run with --overwrite does
    not delete the first stage's output and then stop at a later stage's folder. What a stage
    reads from the stages before it is resolved and checked again when it is about to run."""
    names = pipeline.names
    done = set(dump_runs.recorded_dumps(run_config.output_dir)) if append else set()
    for unit in units:
        spec, dump = unit.spec, unit.dump
        if spec.left_out(getattr(run_config, "sections", ())):
            continue
        if append and (names.index(spec.name) > names.index(dump_runs.APPEND_LAST) or dump in done):  # prepare_append skips these
            continue
        if spec.external and spec.external(getattr(run_config, spec.name)):
            continue
        folder = pipeline.folder(spec.name, run_config, dump if (append or spec.per_dump) else None)
        stage_class = spec.stage_class()
        section = wire_stage_config(pipeline, spec, run_config, dump, append)
        check_output_not_input(folder, config_paths(section), spec.name, stage_class.output_inside_input, state_paths(section, stage_class.state_fields))
        if overwrite:
            stage_class.check_overwrite(section, folder)
        check_output_folder(folder, overwrite, markers=stage_class.output_markers)


def clear_later_folders(run_config: Any, pipeline: Pipeline, units: Sequence[Any], first: Any) -> None:
    """--overwrite: as the run's first stage run deletes its folder `first` (run_stage, once its
    inputs are checked), delete the folders of every other stage run too, so that a run stopped part
    way leaves no finished folder of before downstream of what it made again (nor another dump's of
    the first stage): the same command without --overwrite then resumes the stage it stopped in and
    computes the rest. Every folder was checked by check_folders_first. (`_run.json` stays: the
    stages this run does not make keep their last run's figures there; this run's summary replaces it.)"""
    names = getattr(run_config, "sections", ())
    units = [u for u in units if not u.spec.left_out(names) and not (u.spec.external and u.spec.external(getattr(run_config, u.spec.name)))]
    folders = [pipeline.folder(u.spec.name, run_config, u.dump if u.spec.per_dump else None) for u in units]
    later = [folder for folder in dict.fromkeys(folders) if str(folder) != str(first)]
    with folder_locks(later):  # another run writing or reading one: refused before anything is deleted
        for folder in later:
            if folder.exists():
                overwrite_folder(folder)
