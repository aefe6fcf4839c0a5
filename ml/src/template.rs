//! MODEL-CORE ENGINEER (helper-1) owns this module: see ml/TEAM.md. (being written)
