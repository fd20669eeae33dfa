import { controlPlaneSuite } from './suite.ts';

controlPlaneSuite('sqlite');
