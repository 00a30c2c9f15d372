"""compartment.yml: finding it, reading it, and checking it (CONTRACT.md section 2).

``files`` finds and reads the file, ``nodes`` turns YAML's node tree into plain
data with a line for every problem, ``schema`` holds the compartment.yml rules,
taken from the wire models.
"""

from compartment_cli.project.files import (
    MAX_FILE_BYTES,
    NOT_FOUND_MESSAGE,
    PROJECT_FILE,
    ProjectFileError,
    display_name,
    find_project_file,
    line_of,
    load_project_file,
)
from compartment_cli.project.nodes import Problem

__all__ = [
    "MAX_FILE_BYTES",
    "NOT_FOUND_MESSAGE",
    "PROJECT_FILE",
    "Problem",
    "ProjectFileError",
    "display_name",
    "find_project_file",
    "line_of",
    "load_project_file",
]
