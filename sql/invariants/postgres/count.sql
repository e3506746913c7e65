-- Counts the rest of the violating rows on the server: the command tag says
-- how many rows it moved over.
MOVE FORWARD ALL IN flowaudit_violations
