/* defn: not yet written */
