"""Typed, frozen configuration loaded from params.yaml, by role:

    sections.py   one frozen dataclass per params.yaml section (Params holds them) with its defaults
    rules.py      the value rule of every key (RULES), rules across keys (CROSS_RULES), the weights check
    reading.py    the params file read strictly (a repeated key is an error), its names checked
    loading.py    overrides (preset, study configuration, --set) applied, types checked: load_params
    study.py      the `study` section: configurations, seeds, findings and how they are judged
    explain.py    the `explain` section
    __main__.py   `python -m acsa.config [FILE]`: check a params file with every preset and configuration

The loader is strict: an unknown key, a missing section, a repeated key, a value of the wrong type (floats
must be finite) or out of its range is a one-line `ConfigError` naming the key (e.g. ``train.lr: must be in
[0, 1], got 2.0``), raised when params are loaded, so a stage refuses a bad value before any work starts.

Overrides are applied as dotted keys, in this order: the chosen ``preset`` (e.g. the paper configuration),
then a configuration of the study (``study.configurations`` or ``study.optional``), then explicit
``--set key=value`` overrides. Preset and configuration names match NAME_PATTERN (they become folder and DVC
stage names).

Value rules (rules.py). Every key of Params has exactly one rule in RULES (tests/test_bad_params.py fails for
a key without one), checked after the key's type. A rule is a function of the type-checked value that
returns None when the value is fine, else why not, in words that follow "section.key: " ("must be > 0, got
-1.0"). Build rules from the helpers, so that adding a key is adding one line to RULES:

    "loss.cmpm_eps": above(0),                      a number > 0
    "model.dropout": within(0, 1, high_open=True),  in [0, 1)
    "model.attention": one_of("image_queries", "phrase_queries", "both"),
    "train.max_steps": optional(at_least(1)),       None, or >= 1
    "image.window_grid": items(at_least(1), length=2),
    "evaluate.fusion_weights": items(ANY, min_length=1),
    "text.encoder": not_empty,
    "model.use_local": ANY,                         any value of the declared type (booleans, mappings)

A rule that relates two keys goes to CROSS_RULES (it receives the whole Params). A new top-level table of
named override sets goes to reading.NAMED_TABLES (its names are checked like the presets').

Modules import what they need from the submodule that defines it (`from acsa.config.sections import
Params`); this file holds nothing else, so importing one part never runs the others.
"""
