/* migrate: not yet written */
