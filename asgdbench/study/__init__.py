"""The front end: turning many runs into an answer.

The command line (:mod:`.cli`), grids of runs (:mod:`.grid`), the result folder
and its ``runs.jsonl`` (:mod:`.result_folder`), tables (:mod:`.report`) and
figures (:mod:`.plots`).
"""
